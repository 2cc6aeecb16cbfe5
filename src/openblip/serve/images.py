"""Image references of a request -> validated RGB images, or an ApiError naming the image.

A reference is a `data:<type>;base64,<data>` URL, an uploaded file (multipart), or, only when
the server runs with --allow-remote-images, an http(s) URL fetched with the body-size limit
and a timeout. By default the server fetches nothing on a client's behalf: a URL could point
at the server's own network (server-side request forgery).

Too many pixels and too many bytes are 413; anything else wrong with an image is 400.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from openblip.image import ImageError, load_image
from openblip.serve.errors import ApiError

UPLOAD = "upload:"  # multipart: the reference "upload:N" is the N-th uploaded file
_FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, fully decoded
    data: bytes  # the encoded bytes as received (kept for --keep-low-score)


@dataclass(frozen=True)
class ImageRules:
    max_pixels: int
    max_bytes: int
    allow_remote: bool


def decode_images(refs: Sequence[str], uploads: Sequence[bytes] | None, rules: ImageRules) -> list[DecodedImage]:
    """Every reference decoded and validated, in order; the first bad one raises ApiError."""
    return [_decode(ref, i, uploads, rules) for i, ref in enumerate(refs)]


def _decode(ref: str, index: int, uploads: Sequence[bytes] | None, rules: ImageRules) -> DecodedImage:
    name = f"images[{index}]"
    data = _bytes_of(ref, name, uploads, rules)
    if len(data) > rules.max_bytes:
        raise ApiError(413, f"{name}: {len(data)} bytes, more than the limit of {rules.max_bytes}")
    try:
        image = load_image(data, max_pixels=rules.max_pixels, name=name)
    except ImageError as e:
        status = 413 if e.reason.startswith("too many pixels") else 400
        raise ApiError(status, str(e)) from e
    return DecodedImage(image, data)


def _bytes_of(ref: str, name: str, uploads: Sequence[bytes] | None, rules: ImageRules) -> bytes:
    if uploads is not None and ref.startswith(UPLOAD):
        try:
            return uploads[int(ref[len(UPLOAD) :])]
        except (ValueError, IndexError) as e:
            raise ApiError(400, f"{name}: no uploaded file {ref!r}") from e
    head = ref[:16].lower()
    if head.startswith("data:"):
        return _data_url(ref, name)
    if head.startswith(("http://", "https://")):
        if not rules.allow_remote:
            raise ApiError(
                400,
                f"{name}: remote image URLs are refused (the server was not started with --allow-remote-images); "
                "send the image as a data URL or a multipart upload",
            )
        return _fetch(ref, name, rules.max_bytes)
    shown = ref if len(ref) <= 40 else ref[:40] + "..."
    raise ApiError(400, f"{name}: expected a data URL (data:image/png;base64,...) or an upload, got {shown!r}")


def _data_url(ref: str, name: str) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep:
        raise ApiError(400, f"{name}: a data URL needs a comma before its data (data:image/png;base64,...)")
    if not header.lower().endswith(";base64"):
        raise ApiError(400, f"{name}: only base64 data URLs are accepted (data:image/png;base64,...)")
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(400, f"{name}: the data URL's base64 is invalid ({e})") from e
    if not data:
        raise ApiError(400, f"{name}: empty image (the data URL holds 0 bytes)")
    return data


def _fetch(url: str, name: str, max_bytes: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "openblip-serve"})
    try:
        with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_S) as response:
            data = response.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ApiError(400, f"{name}: could not fetch {url} ({e})") from e
    if len(data) > max_bytes:
        raise ApiError(413, f"{name}: {url} is larger than the limit of {max_bytes} bytes")
    if not data:
        raise ApiError(400, f"{name}: {url} returned no data")
    return data
