"""RandomAugment(N=2, M=5) as BLIP's pre-training and fine-tuning use it (original
``transform/randaugment.py``, from ALBEF), written here with PIL; called by
`openblip.image.train_transform` after the crop and flip.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from PIL import Image, ImageEnhance, ImageOps

# RandomAugment(N=2, M=5) as BLIP configures it (original transform/randaugment.py, from ALBEF).
# Each of N ops is drawn uniformly *with replacement* and applied with probability 0.5.
# Magnitudes at M=5 with MAX_LEVEL=10: enhance factor (5/10)*1.8+0.1 = 1.0, so Brightness and
# Sharpness are identities in BLIP's configuration (kept for fidelity); shear 0.15; translate
# 5 pixels (absolute, not a fraction of the size); rotate 15 degrees; the sign of each
# geometric op is random; exposed areas are filled with grey 128; bilinear interpolation.
_RA_NUM_OPS = 2
_RA_MAGNITUDE = 5
_RA_MAX_LEVEL = 10
_RA_FILL = (128, 128, 128)


def rand_augment(image: Image.Image, rng: random.Random) -> Image.Image:
    for _ in range(_RA_NUM_OPS):
        op = rng.choice(_RA_OPS)
        if rng.random() > 0.5:
            continue
        image = op(image, _RA_MAGNITUDE / _RA_MAX_LEVEL, rng)
    return image


def _signed(value: float, rng: random.Random) -> float:
    return -value if rng.random() > 0.5 else value


def _identity(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    return image


def _autocontrast(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    return ImageOps.autocontrast(image)


def _equalize(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    return ImageOps.equalize(image)


def _brightness(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(level * 1.8 + 0.1)


def _sharpness(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    return ImageEnhance.Sharpness(image).enhance(level * 1.8 + 0.1)


def _shear_x(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    factor = _signed(level * 0.3, rng)
    return _warp(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0))


def _shear_y(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    factor = _signed(level * 0.3, rng)
    return _warp(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0))


def _translate_x(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    offset = _signed(level * 10.0, rng)
    return _warp(image, (1.0, 0.0, -offset, 0.0, 1.0, 0.0))


def _translate_y(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    offset = _signed(level * 10.0, rng)
    return _warp(image, (1.0, 0.0, 0.0, 0.0, 1.0, -offset))


def _rotate(image: Image.Image, level: float, rng: random.Random) -> Image.Image:
    # Counter-clockwise (as displayed) by `degrees` about (W/2, H/2) in pixel-centre
    # coordinates, like cv2.getRotationMatrix2D used by the original.
    degrees = _signed(level * 30.0, rng)
    radians = math.radians(degrees)
    a, b = math.cos(radians), math.sin(radians)
    cx, cy = image.width / 2, image.height / 2
    return _warp(image, (a, b, (1 - a) * cx - b * cy, -b, a, b * cx + (1 - a) * cy))


def _warp(image: Image.Image, forward: tuple[float, float, float, float, float, float]) -> Image.Image:
    """Apply a forward affine map given in integer-pixel-centre coordinates (cv2 convention).

    PIL's ``AFFINE`` wants the inverse map (output -> input) in continuous coordinates where
    pixel i spans [i, i+1); both conversions are done here so the result matches
    ``cv2.warpAffine(img, forward, flags=INTER_LINEAR, borderValue=128)``.
    """
    a, b, c, d, e, f = forward
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det  # inverse linear part
    ic, if_ = -(ia * c + ib * f), -(id_ * c + ie * f)  # inverse translation
    # centre coords u = x - 0.5: src_x = ia*(x-.5) + ib*(y-.5) + ic + .5
    ic += 0.5 - 0.5 * (ia + ib)
    if_ += 0.5 - 0.5 * (id_ + ie)
    return image.transform(
        image.size,
        Image.Transform.AFFINE,
        (ia, ib, ic, id_, ie, if_),
        resample=Image.Resampling.BILINEAR,
        fillcolor=_RA_FILL,
    )


_RA_OPS: tuple[Callable[[Image.Image, float, random.Random], Image.Image], ...] = (
    _identity,
    _autocontrast,
    _brightness,
    _sharpness,
    _equalize,
    _shear_x,
    _shear_y,
    _translate_x,
    _translate_y,
    _rotate,
)
