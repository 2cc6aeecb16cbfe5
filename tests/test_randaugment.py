"""RandAugment as BLIP configures it: the geometric ops follow cv2's conventions (what the
original used), and the policy changes some images, never their size."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from openblip.randaugment import _rotate, _translate_x, _warp, rand_augment


def _noise(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _rotation_forward(width: int, height: int, degrees: float) -> tuple[float, ...]:
    # cv2.getRotationMatrix2D((W/2, H/2), degrees, 1), written out
    a, b = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    cx, cy = width / 2, height / 2
    return (a, b, (1 - a) * cx - b * cy, -b, a, b * cx + (1 - a) * cy)


def test_geometric_ops_match_cv2_conventions() -> None:
    image = Image.fromarray(_noise(20, 30))
    source = np.asarray(image)
    # TranslateX at magnitude 5: 5 whole pixels, exposed band filled with grey 128
    rng = random.Random(0)
    sign = -1 if random.Random(0).random() > 0.5 else 1
    moved = np.asarray(_translate_x(image, 0.5, rng))
    if sign > 0:  # content moves left by 5: dst(x) = src(x + 5)
        assert np.array_equal(moved[:, :-5], source[:, 5:]) and (moved[:, -5:] == 128).all()
    else:
        assert np.array_equal(moved[:, 5:], source[:, :-5]) and (moved[:, :5] == 128).all()
    # shear x about the top row (cv2 integer pixel centres): row 0 is untouched, row 10
    # shifts by 10 * 0.15 = 1.5 pixels (bilinear average of two neighbours)
    sheared = np.asarray(_warp(image, (1.0, 0.15, 0.0, 0.0, 1.0, 0.0))).astype(int)
    assert np.array_equal(sheared[0], source[0])
    neighbours = (source[10, 2:-1].astype(int) + source[10, 1:-2].astype(int)) / 2
    assert np.abs(sheared[10, 3:] - neighbours).max() <= 1
    # rotation about (W/2, H/2) in pixel-centre coordinates fixes pixel (10, 15)
    spun = np.asarray(_warp(image, _rotation_forward(30, 20, 17.0))).astype(int)
    assert np.abs(spun[10, 15] - source[10, 15]).max() <= 1  # float rounding only
    assert np.abs(spun[10, 17] - source[10, 17]).max() > 1
    # identity warp is exact
    assert np.array_equal(np.asarray(_warp(image, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0))), source)
    # rotation keeps the centre pixel of an odd-sized constant patch and fills corners grey
    patch = Image.new("RGB", (21, 21), (200, 10, 10))
    rotated = np.asarray(_rotate(patch, 0.5, random.Random(0)))
    assert tuple(rotated[10, 10]) == (200, 10, 10)
    assert tuple(rotated[0, 0]) == (128, 128, 128)


def test_rand_augment_changes_some_images_but_keeps_size() -> None:
    image = Image.fromarray(_noise(24, 24))
    outputs = [np.asarray(rand_augment(image, random.Random(s))) for s in range(30)]
    assert all(o.shape == (24, 24, 3) for o in outputs)
    changed = sum(not np.array_equal(o, np.asarray(image)) for o in outputs)
    assert 5 < changed < 30  # each op applies with p=0.5 and some ops are identities
