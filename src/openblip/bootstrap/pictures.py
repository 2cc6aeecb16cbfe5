"""The report's pictures: thumbnails and Grad-CAM heat maps as JPEG within a byte cap each.

report.html inlines every picture it shows, so its size is bounded only if each picture is.
JPEG at a fixed quality is small for photos (a 96 px thumbnail ~3 KB, a 160 px heat map ~8 KB)
but has no size bound of its own: fine detail or noise makes it grow (96 px of random pixels is
~7 KB at quality 80). `jpeg_within` therefore encodes at the fixed quality and, only for a
picture over its cap, again at lower qualities and then at halved sizes until it fits, so the
cap holds for any image and a typical photo is encoded once, as it would be anyway. The result
is a pure function of the pixels (no timing, no state), so a resumed or Ray run stores the same
bytes as an uninterrupted local one.
"""

from __future__ import annotations

import io

from PIL import Image

THUMB_SIZE = 96  # px, longest side of an example's thumbnail
THUMB_QUALITY = 80
THUMB_MAX_BYTES = 8 * 1024  # random noise at 96 px and quality 80 is ~6.8 KB: real images fit at once
HEATMAP_SIZE = 160  # px, longest side of an example's heat map (readable, yet a few hundred stay small)
HEATMAP_QUALITY = 75
HEATMAP_MAX_BYTES = 16 * 1024  # random noise at 160 px and quality 75 is ~16 KB
# Lower qualities tried in turn when a picture is over its cap; the last one then halves the size.
_FALLBACK_QUALITIES = (60, 40, 20, 10)


def b64_len(n: int) -> int:
    """Characters of n bytes in base64 (with padding): the size of a data URI's payload."""
    return 4 * -(-n // 3)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_within(image: Image.Image, longest: int, quality: int, max_bytes: int) -> bytes:
    """`image` scaled down (aspect kept, never up) to at most `longest` px on its longest side,
    as JPEG at `quality`; a picture still over `max_bytes` is encoded at lower qualities, then
    at halved sizes, until it fits. A cap below what a 1 px JPEG takes (~700 bytes of headers)
    is a ValueError."""
    picture = image.convert("RGB")  # a copy: the caller's image is left as it is
    picture.thumbnail((longest, longest))
    qualities = [quality] + [q for q in _FALLBACK_QUALITIES if q < quality]
    for q in qualities:
        data = _jpeg(picture, q)
        if len(data) <= max_bytes:
            return data
    while max(picture.size) > 1:
        w, h = picture.size
        picture = picture.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BICUBIC)
        data = _jpeg(picture, qualities[-1])
        if len(data) <= max_bytes:
            return data
    raise ValueError(f"no JPEG of this image fits in {max_bytes} bytes")


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """An example's thumbnail: THUMB_SIZE px, at most THUMB_MAX_BYTES."""
    return jpeg_within(image, THUMB_SIZE, THUMB_QUALITY, THUMB_MAX_BYTES)


def heatmap_jpeg(overlay: Image.Image) -> bytes:
    """An example's heat map (tasks/heatmap.overlay drawn at HEATMAP_SIZE): at most HEATMAP_MAX_BYTES."""
    return jpeg_within(overlay, HEATMAP_SIZE, HEATMAP_QUALITY, HEATMAP_MAX_BYTES)
