"""Every image rule in one place: load + validate, eval preprocessing, train augmentation.

Data flow::

    file / bytes / PIL image ──► load_image (validate, EXIF-rotate, RGB, pixel limit)
                             ──► preprocess (bicubic S×S, CLIP mean/std)          (B, 3, S, S)
                             ──► train_transform (crop, flip, RandAugment, norm)  (3, S, S)

The eval transform reproduces BLIP's ``transforms.Resize((S, S), BICUBIC)`` + ``ToTensor`` +
``Normalize`` (original ``data/__init__.py``): a direct resize to a square, no crop, no aspect
preservation. The train transform reproduces ``RandomResizedCrop`` + ``RandomHorizontalFlip`` +
``RandomAugment(2, 5)`` (original ``transform/randaugment.py``), in openblip/randaugment.py.
"""

from __future__ import annotations

import errno
import io
import math
import os
import random
import stat
import warnings
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from openblip.limits import DEFAULT_MAX_PIXELS  # re-exported: the CLI reads it without torch
from openblip.randaugment import rand_augment

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_MAX_PIXELS",
    "ImageError",
    "load_image",
    "preprocess",
    "train_transform",
]

# OpenAI CLIP statistics, used by BLIP for every task (original data/__init__.py).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_WHITE = (255, 255, 255, 255)
_INT16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA"})


class ImageError(ValueError):
    """An image that cannot be used: the message names the source and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Open, validate and normalise one image to a fully decoded RGB ``PIL.Image``.

    * EXIF orientation is applied (phone photos are stored sideways with a rotation tag).
    * Every mode becomes RGB. Transparency (RGBA, LA, PA, P/L/RGB with a ``transparency`` key)
      is composited **on white**, not dropped: dropping alpha turns transparent logo
      backgrounds into arbitrary (often black) colours. 16-bit integer images are scaled
      by 1/257; 32-bit ``I`` images are treated as 16-bit if any value exceeds 255 and as
      8-bit otherwise; float ``F`` images are treated as [0, 1] if their maximum is <= 1
      and as [0, 255] otherwise. Animated images give their first frame.
    * The pixel count (width × height) is checked against ``max_pixels`` from the header,
      before decoding, so decompression bombs are refused cheaply. PIL's own bomb check
      (``Image.MAX_IMAGE_PIXELS``) still applies on top and is reported as ImageError too.
    * The whole image is decoded here, so corrupt or truncated files fail now, with
      ``ImageError``, not later inside a data loader worker.

    ``name`` overrides the label used in error messages (useful for bytes from a shard);
    by default it is the path, ``"<bytes>"`` or ``"<PIL.Image>"``.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if isinstance(source, Image.Image):
        label = name or "<PIL.Image>"
        return _normalise(source, label, max_pixels)
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "<bytes>"
        if len(source) == 0:
            raise ImageError(label, "empty data (0 bytes)")
        return _open_and_normalise(io.BytesIO(bytes(source)), label, max_pixels)
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        label = name or path
        _check_path(path, label)
        try:
            with open(path, "rb") as fp:
                return _open_and_normalise(fp, label, max_pixels)
        except OSError as exc:  # only open() can raise it: decode errors become ImageError
            raise ImageError(label, f"unreadable path ({exc.strerror or exc})") from exc
    raise TypeError(f"load_image expects a path, bytes or PIL.Image.Image, got {type(source).__name__}")


def _check_path(path: str, label: str) -> None:
    """One stat, whose failure says why: "no such file" only when nothing is there (a dangling
    link included); a link loop, a name too long or a parent that cannot be searched say so
    (os.path.exists is False for all of them)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ImageError(label, "no such file") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(label, "symbolic link loop (too many levels of symbolic links)") from exc
        raise ImageError(label, f"unreadable path ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(label, "is a directory, not an image file")
    if info.st_size == 0:
        raise ImageError(label, "empty file (0 bytes)")


def _open_and_normalise(fp: BinaryIO, label: str, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # We enforce our own limit; PIL's warning would otherwise leak for images between
        # its limit and twice its limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # A corrupt EXIF block (PIL warns when it reads it, at open and when orienting) loses only
        # the orientation and DPI: the pixels are fine, so no warning on the user's terminal.
        warnings.filterwarnings("ignore", message="(?i)corrupt exif", category=UserWarning)
        try:
            im = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise ImageError(label, f"too many pixels (PIL's decompression-bomb limit: {exc})") from exc
        except Image.UnidentifiedImageError as exc:
            raise ImageError(label, "not an image (unrecognised format or corrupt header)") from exc
        except Exception as exc:  # PIL raises many types on hostile input
            raise ImageError(label, _describe(exc, "image header")) from exc
        with im:
            return _normalise(im, label, max_pixels)


def _normalise(im: Image.Image, label: str, max_pixels: int) -> Image.Image:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(label, f"empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(label, f"too many pixels: {width}x{height} = {width * height} > limit {max_pixels}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            if getattr(im, "is_animated", False):
                im.seek(0)
            im.load()  # full decode: corruption and truncation surface here
            oriented = ImageOps.exif_transpose(im)  # always a new, loaded image
            return _to_rgb(oriented)
        except Image.DecompressionBombError as exc:
            raise ImageError(label, f"too many pixels (PIL's decompression-bomb limit: {exc})") from exc
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
            raise ImageError(label, _describe(exc, "image data")) from exc


def _describe(exc: Exception, what: str) -> str:
    text = str(exc).lower()
    if "ghostscript" in text:  # PIL reads EPS only through the Ghostscript program
        return f"unsupported image (EPS needs Ghostscript, which is not installed: {exc})"
    kind = "truncated" if "truncated" in text else "corrupt"
    return f"{kind} {what} ({type(exc).__name__}: {exc})"


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha composited on white; high bit depths scaled to 8 bits."""
    mode = im.mode
    if mode in _INT16_MODES or mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(im), mode), mode="L").convert("RGB")
    if mode == "La":  # premultiplied: PIL converts La only to LA
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    data = values.astype(np.float64)
    if mode in _INT16_MODES:
        scaled = data / 257.0
    elif mode == "I":
        scaled = np.clip(data, 0, 65535) / 257.0 if data.size and data.max() > 255 else data
    else:  # "F"
        # NaN pixels become black below; an image of NaN only has no scale (and np.nanmax warns)
        finite_max = 0.0 if np.isnan(data).all() else float(np.nanmax(data))
        scaled = data * 255.0 if finite_max <= 1.0 else data
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- eval transform


def preprocess(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """BLIP's eval transform: bicubic resize to ``size``×``size`` (no crop), CLIP-normalise.

    Returns float32 ``(B, 3, size, size)``. Images must be RGB (use :func:`load_image`).
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)  # (B, S, S, 3)
    for index, image in enumerate(images):
        _check_rgb(image, index)
        resized = image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BICUBIC)
        batch[index] = np.asarray(resized)
    return _normalise_batch(batch)


def _check_rgb(image: object, index: int) -> None:
    if not isinstance(image, Image.Image):
        raise TypeError(f"images[{index}] is {type(image).__name__}, expected PIL.Image.Image")
    if image.mode != "RGB":
        raise ImageError(f"images[{index}]", f"mode {image.mode!r}, expected 'RGB' (use load_image)")


def _normalise_batch(batch: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, S, S, 3)`` -> CLIP-normalised float32 ``(B, 3, S, S)``."""
    pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).to(torch.float32)  # (B, 3, S, S)
    pixels.mul_(1.0 / 255.0)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return pixels.sub_(mean).div_(std).contiguous()


# --------------------------------------------------------------------------- train transform


def train_transform(
    image: Image.Image,
    size: int,
    *,
    min_scale: float,
    rng: random.Random,
    hflip: bool = True,
) -> torch.Tensor:
    """BLIP's train transform for one RGB image -> float32 ``(3, size, size)``.

    ``RandomResizedCrop(size, scale=(min_scale, 1), ratio=(3/4, 4/3), bicubic)``, then a
    horizontal flip with p=0.5 (``hflip=False`` disables it, for texts that say left/right),
    then ``RandomAugment(N=2, M=5)`` and CLIP normalisation. BLIP uses ``min_scale`` 0.2 for
    pretraining and 0.5 for fine-tuning. All randomness comes from ``rng``, so a seed fixes
    the output.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    _check_rgb(image, 0)
    left, top, width, height = _random_resized_crop_box(image.width, image.height, min_scale, rng)
    out = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + width, top + height))
    if hflip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = rand_augment(out, rng)
    return _normalise_batch(np.array(out)[None])[0]


def _random_resized_crop_box(
    width: int, height: int, min_scale: float, rng: random.Random
) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` semantics: (left, top, w, h)."""
    area = width * height
    log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
    for _ in range(10):
        target_area = area * rng.uniform(min_scale, 1.0)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return left, top, w, h
    # Fallback: central crop with the aspect ratio clamped into [3/4, 4/3].
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, round(width / (3 / 4))
    elif in_ratio > 4 / 3:
        w, h = round(height * (4 / 3)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h
