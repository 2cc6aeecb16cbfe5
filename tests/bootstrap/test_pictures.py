"""The report's pictures within their byte caps (bootstrap/pictures.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from openblip.bootstrap.pictures import (
    HEATMAP_MAX_BYTES,
    HEATMAP_SIZE,
    THUMB_MAX_BYTES,
    THUMB_QUALITY,
    THUMB_SIZE,
    b64_len,
    heatmap_jpeg,
    jpeg_within,
    thumbnail_jpeg,
)


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def smooth(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.broadcast_to((x + y) / 2, (h, w, 3)).astype(np.uint8))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image


def test_a_photo_is_encoded_once_at_the_fixed_quality() -> None:
    image = smooth(300, 200)
    got = thumbnail_jpeg(image)
    plain = image.copy()
    plain.thumbnail((THUMB_SIZE, THUMB_SIZE))
    buf = io.BytesIO()
    plain.save(buf, format="JPEG", quality=THUMB_QUALITY)
    assert got == buf.getvalue()  # what the decode stage always wrote: nothing changes for real images
    assert decoded(got).size == (96, 64)
    assert smooth(40, 30).size == decoded(thumbnail_jpeg(smooth(40, 30))).size  # never scaled up


def test_noise_fits_its_cap() -> None:
    for seed in range(3):  # pure noise at the display size: the worst case of a JPEG
        thumb, heat = (
            thumbnail_jpeg(noise(THUMB_SIZE, THUMB_SIZE, seed)),
            heatmap_jpeg(noise(HEATMAP_SIZE, HEATMAP_SIZE, seed)),
        )
        assert len(thumb) <= THUMB_MAX_BYTES and len(heat) <= HEATMAP_MAX_BYTES
        assert decoded(thumb).size == (THUMB_SIZE, THUMB_SIZE) and decoded(heat).size == (HEATMAP_SIZE, HEATMAP_SIZE)


def test_over_the_cap_lower_quality_then_smaller() -> None:
    image = noise(400, 300)
    full = jpeg_within(image, 400, 95, 10**7)
    lower = jpeg_within(image, 400, 95, len(full) - 1)
    assert len(lower) < len(full) and decoded(lower).size == (400, 300)  # a lower quality, same size
    tiny = jpeg_within(image, 400, 95, 2_000)
    assert len(tiny) <= 2_000 and max(decoded(tiny).size) < 400  # halved until it fits
    assert jpeg_within(image, 400, 95, 2_000) == tiny  # a pure function of the pixels
    with pytest.raises(ValueError, match="100 bytes"):
        jpeg_within(image, 400, 95, 100)  # below a JPEG's own headers


def test_b64_len() -> None:
    import base64

    for n in (0, 1, 2, 3, 4, 8191, 8192):
        assert b64_len(n) == len(base64.b64encode(bytes(n)))
