"""The Python API's inputs (openblip/api.py): one image or a sequence of them, one text or a
sequence of them, each item's type checked before any image is read, and the name an image
gets in results and errors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from PIL import Image

from openblip.image import ImageSource

ImageInput = ImageSource  # path, bytes or PIL.Image.Image


_IMAGE_TYPES = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)
_EXPECTED = "expected a path, bytes or PIL.Image.Image"


def as_images(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One image or a sequence of them -> a list, each item's type checked before any is read."""
    if isinstance(images, _IMAGE_TYPES):
        return [images]  # one image (bytes are a sequence too, of ints)
    if hasattr(images, "__array__") or not isinstance(images, Iterable):  # an array is one image, not rows
        raise TypeError(f"images is {type(images).__name__}, {_EXPECTED}, or a sequence of them{_hint(images)}")
    items = list(images)
    for i, item in enumerate(items):
        if not isinstance(item, _IMAGE_TYPES):
            raise TypeError(f"images[{i}] is {type(item).__name__}, {_EXPECTED}{_hint(item)}")
    return items


def as_texts(texts: str | Sequence[str], what: str = "texts") -> list[str]:
    """One text or a sequence of them -> a list (each item's type is checked with its content)."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Iterable):
        raise TypeError(f"{what} is {type(texts).__name__}, expected a str or a sequence of them")
    return list(texts)


def _hint(value: object) -> str:
    return " (make an array an image with PIL.Image.fromarray)" if hasattr(value, "__array__") else ""


def image_name(source: ImageInput, index: int) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, Image.Image):
        return f"<image #{index}>"
    return f"<bytes #{index}>"
