from __future__ import annotations

import json

import numpy as np
import pytest

from openblip.data.scene import GRID, SceneGraph, all_relations, cell_bounds, sample_scene
from openblip.data.vocab import MAX_OBJECTS


def _scenes(n: int, image_size: int = 64) -> list[SceneGraph]:
    rng = np.random.default_rng(0)
    return [sample_scene(rng, image_size) for _ in range(n)]


def test_objects_inside_their_cells_and_never_overlap() -> None:
    for scene in _scenes(200):
        assert 1 <= len(scene.objects) <= MAX_OBJECTS
        for o in scene.objects:
            cx0, cy0, cx1, cy1 = cell_bounds(scene.image_size, o.cell)
            x0, y0, x1, y1 = o.bbox
            assert cx0 <= x0 < x1 <= cx1 and cy0 <= y0 < y1 <= cy1
        boxes = [o.bbox for o in scene.objects]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_kinds_unique_except_one_group() -> None:
    scenes = _scenes(300)
    groups = 0
    for scene in scenes:
        sizes = sorted(len(idx) for idx in scene.kinds().values())
        assert sizes[:-1] == [1] * (len(sizes) - 1)  # at most one kind repeats
        if sizes[-1] > 1:
            groups += 1
            (kind,) = [k for k, idx in scene.kinds().items() if len(idx) > 1]
            assert len({scene.objects[i].size for i in scene.kinds()[kind]}) == 1
    assert 0.1 < groups / len(scenes) < 0.5


def test_relations_agree_with_boxes() -> None:
    for scene in _scenes(100):
        for r in scene.relations:
            a, b = scene.objects[r.subject].bbox, scene.objects[r.object].bbox
            expected = {"left_of": a[2] <= b[0], "right_of": b[2] <= a[0], "above": a[3] <= b[1], "below": b[3] <= a[1]}
            assert expected[r.predicate]
        n = len(scene.objects)
        # every ordered pair in different columns has a horizontal relation, in different rows a vertical one
        pairs = sum(
            (a.cell[1] != b.cell[1]) + (a.cell[0] != b.cell[0])
            for i, a in enumerate(scene.objects)
            for j, b in enumerate(scene.objects)
            if i != j
        )
        assert len(scene.relations) == pairs <= n * (n - 1) * 2


def test_json_round_trip() -> None:
    for scene in _scenes(20):
        text = json.dumps(scene.to_json())
        assert SceneGraph.from_json(json.loads(text)) == scene


def test_bad_json_and_sizes_are_named_errors() -> None:
    with pytest.raises(ValueError, match="not a scene graph"):
        SceneGraph.from_json({"objects": []})
    d = _scenes(1)[0].to_json()
    d["objects"][0]["colour"] = "mauve"
    with pytest.raises(ValueError, match="unknown attribute"):
        SceneGraph.from_json(d)
    with pytest.raises(ValueError, match="below the minimum"):
        sample_scene(np.random.default_rng(0), 16)


def test_cells_tile_the_image() -> None:
    for size in (32, 64, 95, 96):
        area = sum(
            (x1 - x0) * (y1 - y0)
            for x0, y0, x1, y1 in (cell_bounds(size, (r, c)) for r in range(GRID) for c in range(GRID))
        )
        assert area == size * size
    assert all_relations(()) == ()
