"""Scene graphs of the synthetic benchmark: objects with attributes and boxes, and their relations.

An image is a 3x3 grid of cells holding at most one object each, every object drawn inside its
cell. Two objects therefore never overlap, and "A is left of B" (A's column < B's column) means
A's box ends before B's box begins: every relation a caption states is exactly checkable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from openblip.data.vocab import (
    BACKGROUNDS,
    COLOURS,
    MAX_OBJECTS,
    REGIONS,
    RELATIONS,
    SHAPES,
    SIZE_FRACTION,
    SIZES,
)

GRID = 3
MIN_IMAGE_SIZE = 32  # below this a small object is under 6 px and its shape is not recognisable
GROUP_PROBABILITY = 0.35  # chance that a scene of >= 2 objects holds several copies of one kind

Kind = tuple[str, str]  # (colour, shape): what a noun phrase like "red circle" names


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cell: tuple[int, int]  # (row, col) in the 3x3 grid
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1/y1 exclusive

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.colour not in COLOURS or self.size not in SIZES:
            raise ValueError(f"unknown attribute in {self}")
        if self.cell not in REGIONS:
            raise ValueError(f"cell {self.cell} is outside the {GRID}x{GRID} grid")

    @property
    def kind(self) -> Kind:
        return (self.colour, self.shape)

    @property
    def region(self) -> str:
        return REGIONS[self.cell]


@dataclass(frozen=True)
class Relation:
    """`objects[subject]` is `predicate` (left_of, right_of, above, below) `objects[object]`."""

    subject: int
    predicate: str
    object: int


@dataclass(frozen=True)
class SceneGraph:
    image_size: int
    background: str
    objects: tuple[SceneObject, ...]
    relations: tuple[Relation, ...]

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}")
        if len({o.cell for o in self.objects}) != len(self.objects):
            raise ValueError("two objects share a grid cell")

    def kinds(self) -> dict[Kind, list[int]]:
        """(colour, shape) -> indices of the objects of that kind, in object order."""
        out: dict[Kind, list[int]] = {}
        for i, o in enumerate(self.objects):
            out.setdefault(o.kind, []).append(i)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "background": self.background,
            "objects": [
                {"shape": o.shape, "colour": o.colour, "size": o.size, "cell": list(o.cell), "bbox": list(o.bbox)}
                for o in self.objects
            ],
            "relations": [[r.subject, r.predicate, r.object] for r in self.relations],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SceneGraph:
        try:
            objects = tuple(
                SceneObject(
                    shape=o["shape"],
                    colour=o["colour"],
                    size=o["size"],
                    cell=(int(o["cell"][0]), int(o["cell"][1])),
                    bbox=(int(o["bbox"][0]), int(o["bbox"][1]), int(o["bbox"][2]), int(o["bbox"][3])),
                )
                for o in d["objects"]
            )
            relations = tuple(Relation(int(s), str(p), int(t)) for s, p, t in d["relations"])
            return cls(int(d["image_size"]), str(d["background"]), objects, relations)
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"not a scene graph: missing or malformed field ({e!r})") from e


def relation_holds(a: SceneObject, predicate: str, b: SceneObject) -> bool:
    """Exact, from the grid cells (boxes never cross a cell border)."""
    (ra, ca), (rb, cb) = a.cell, b.cell
    if predicate == "left_of":
        return ca < cb
    if predicate == "right_of":
        return ca > cb
    if predicate == "above":
        return ra < rb
    if predicate == "below":
        return ra > rb
    raise ValueError(f"unknown relation {predicate!r}; expected one of {RELATIONS}")


def all_relations(objects: tuple[SceneObject, ...]) -> tuple[Relation, ...]:
    return tuple(
        Relation(i, p, j)
        for i, a in enumerate(objects)
        for j, b in enumerate(objects)
        if i != j
        for p in RELATIONS
        if relation_holds(a, p, b)
    )


def cell_bounds(image_size: int, cell: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of a grid cell; the last cell absorbs the rounding remainder."""
    row, col = cell
    edges = [round(k * image_size / GRID) for k in range(GRID + 1)]
    return edges[col], edges[row], edges[col + 1], edges[row + 1]


def _place(rng: np.random.Generator, image_size: int, cell: tuple[int, int], size: str) -> tuple[int, ...]:
    x0, y0, x1, y1 = cell_bounds(image_size, cell)
    side = max(6, round(SIZE_FRACTION[size] * (image_size / GRID)))
    # One pixel of margin inside the cell keeps neighbouring objects visibly apart.
    slack_x, slack_y = max(0, x1 - x0 - side - 2), max(0, y1 - y0 - side - 2)
    ox = x0 + 1 + int(rng.integers(0, slack_x + 1))
    oy = y0 + 1 + int(rng.integers(0, slack_y + 1))
    return ox, oy, ox + side, oy + side


def sample_scene(rng: np.random.Generator, image_size: int) -> SceneGraph:
    """1-4 objects; sometimes a group of 2+ identical ones (same colour, shape and size), the
    other objects each of a distinct (colour, shape) so that a noun phrase names them uniquely."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size {image_size} is below the minimum {MIN_IMAGE_SIZE}")
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    group = int(rng.integers(2, n + 1)) if n >= 2 and rng.random() < GROUP_PROBABILITY else 1
    colours, shapes = list(COLOURS), list(SHAPES)
    n_kinds = 1 + n - group
    picks = rng.choice(len(colours) * len(shapes), size=n_kinds, replace=False)
    kinds = [(colours[int(p) // len(shapes)], shapes[int(p) % len(shapes)]) for p in picks]
    sizes = [SIZES[int(rng.integers(0, len(SIZES)))] for _ in kinds]
    per_object = [0] * group + list(range(1, n_kinds))  # object -> index into kinds
    cells = [(int(c) // GRID, int(c) % GRID) for c in rng.choice(GRID * GRID, size=n, replace=False)]
    objects = []
    for k, cell in zip(per_object, cells):
        x0, y0, x1, y1 = _place(rng, image_size, cell, sizes[k])
        objects.append(SceneObject(kinds[k][1], kinds[k][0], sizes[k], cell, (x0, y0, x1, y1)))
    backgrounds = list(BACKGROUNDS)
    background = backgrounds[int(rng.integers(0, len(backgrounds)))]
    objs = tuple(objects)
    return SceneGraph(image_size, background, objs, all_relations(objs))
