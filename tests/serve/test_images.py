"""Image references: data URLs, uploads, remote URLs refused by default; statuses 400 / 413."""

from __future__ import annotations

import pytest

from openblip.serve.errors import ApiError
from openblip.serve.images import ImageRules, decode_images

from .conftest import data_url, png_bytes

RULES = ImageRules(max_pixels=10_000, max_bytes=100_000, allow_remote=False)


def test_data_urls_and_uploads_decode_the_same() -> None:
    data = png_bytes(0)
    (a,) = decode_images([data_url(data)], None, RULES)
    (b,) = decode_images(["upload:0"], [data], RULES)
    assert a.image.tobytes() == b.image.tobytes() and a.data == data and a.image.mode == "RGB"
    (c,) = decode_images(["DATA:image/png;BASE64," + data_url(data).split(",", 1)[1]], None, RULES)
    assert c.data == data


@pytest.mark.parametrize(
    ("ref", "uploads", "status", "words"),
    [
        ("upload:0", None, 400, "expected a data URL"),  # uploads only exist in multipart requests
        ("upload:3", [b"x"], 400, "no uploaded file"),
        ("data:image/png;base64", None, 400, "comma"),
        ("https://example.com/a.png", None, 400, "--allow-remote-images"),
        ("file:///etc/passwd", None, 400, "expected a data URL"),
        (data_url(png_bytes(0, size=(120, 100))), None, 413, "too many pixels"),
        (data_url(b"\0" * 100_001), None, 413, "limit of 100000"),
    ],
)
def test_refusals(ref: str, uploads: list[bytes] | None, status: int, words: str) -> None:
    with pytest.raises(ApiError) as e:
        decode_images([ref], uploads, RULES)
    assert e.value.status == status and words in e.value.message and "images[0]" in e.value.message
