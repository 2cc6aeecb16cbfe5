"""The controlled vocabulary of the synthetic scenes: every word a caption, question or answer may use.

One table per attribute, so the renderer, the caption grammar, the VQA templates and the
scene attribute F1 parser (`openblip.evaluate.scene_f1`) agree by construction.
"""

from __future__ import annotations

# Saturated colours, far apart in RGB and from the grey textured backgrounds (luminance 70..185),
# so each stays nameable after JPEG compression at 64-96 px.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (40, 75, 225),
    "yellow": (240, 220, 35),
    "purple": (145, 50, 190),
    "orange": (245, 130, 25),
    "white": (250, 250, 250),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
PLURALS: dict[str, str] = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}

SIZES: tuple[str, ...] = ("small", "large")
# Object side as a fraction of one grid cell (an image is a 3x3 grid of cells, one object per cell).
SIZE_FRACTION: dict[str, float] = {"small": 0.5, "large": 0.85}

# Background texture -> the adjective captions use for it.
BACKGROUNDS: dict[str, str] = {
    "noise": "noisy",
    "stripes": "striped",
    "gradient": "gradient",
    "checker": "checkered",
    "dots": "dotted",
}

# Grid cell (row, col) -> region name. Captions place an object with the most specific name of its cell.
REGIONS: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "centre",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}

# Relations between two objects, read "subject <relation> object".
RELATIONS: tuple[str, ...] = ("left_of", "right_of", "above", "below")
INVERSE_RELATION: dict[str, str] = {
    "left_of": "right_of",
    "right_of": "left_of",
    "above": "below",
    "below": "above",
}
RELATION_PHRASES: dict[str, str] = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
}

NUMBER_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
MAX_OBJECTS = 4
