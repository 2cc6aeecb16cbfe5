from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from openblip.data.render import GREY_HI, GREY_LO, encode_jpeg, render_scene
from openblip.data.scene import sample_scene
from openblip.data.vocab import BACKGROUNDS, COLOURS


def _nearest_colour(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda c: float(np.sum((np.array(COLOURS[c]) - rgb) ** 2)))


@pytest.mark.parametrize("image_size", [64, 96])
def test_object_centres_show_their_colour_after_jpeg(image_size: int) -> None:
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(40):
        scene = sample_scene(rng, image_size)
        image = Image.open(io.BytesIO(encode_jpeg(render_scene(scene, rng))))
        assert image.size == (image_size, image_size) and image.mode == "RGB"
        pixels = np.asarray(image).astype(np.int64)
        for o in scene.objects:
            x0, y0, x1, y1 = o.bbox
            rgb = pixels[(y0 + y1) // 2, (x0 + x1) // 2]
            assert _nearest_colour(rgb) == o.colour, (o, rgb)
            assert np.abs(rgb - np.array(COLOURS[o.colour])).max() < 40
            checked += 1
    assert checked > 60


def test_background_is_grey_texture_away_from_objects() -> None:
    rng = np.random.default_rng(2)
    kinds_seen = set()
    for _ in range(30):
        scene = sample_scene(rng, 64)
        kinds_seen.add(scene.background)
        pixels = np.asarray(render_scene(scene, rng)).astype(np.int64)
        mask = np.ones(pixels.shape[:2], bool)
        for o in scene.objects:
            x0, y0, x1, y1 = o.bbox
            mask[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = False
        bg = pixels[mask]
        assert bg.min() >= GREY_LO - 10 and bg.max() <= GREY_HI + 10
        assert (bg.max(axis=1) - bg.min(axis=1)).max() <= 16  # near-grey: at most the faint tint
        assert bg.std() > 3  # textured, not flat
    assert kinds_seen == set(BACKGROUNDS)


def test_same_generator_state_same_pixels() -> None:
    scene = sample_scene(np.random.default_rng(5), 64)
    a = encode_jpeg(render_scene(scene, np.random.default_rng(9)))
    b = encode_jpeg(render_scene(scene, np.random.default_rng(9)))
    c = encode_jpeg(render_scene(scene, np.random.default_rng(10)))
    assert a == b and a != c
