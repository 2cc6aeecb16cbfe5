"""Draw a scene graph: a grey textured background, then each object as a flat-coloured shape.

Shapes are drawn at `SUPERSAMPLE` times the size and box-filtered down, so edges are smooth at
64-96 px without any randomness; everything random comes from the generator passed in, so the
same generator state gives byte-identical images.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from openblip.data.scene import SceneGraph, SceneObject
from openblip.data.vocab import COLOURS

SUPERSAMPLE = 4
GREY_LO, GREY_HI = 70, 185  # background luminance range: darker than white/yellow, lighter than blue
JPEG_QUALITY = 95

Texture = Callable[[np.random.Generator, int], np.ndarray]


def _two_levels(rng: np.random.Generator, min_gap: int) -> tuple[int, int]:
    a = int(rng.integers(GREY_LO, GREY_HI - min_gap + 1))
    b = int(rng.integers(a + min_gap, GREY_HI + 1))
    return (a, b) if rng.random() < 0.5 else (b, a)


def _noise(rng: np.random.Generator, s: int) -> np.ndarray:
    base = rng.integers(GREY_LO + 25, GREY_HI - 25)
    coarse = rng.normal(0.0, 18.0, size=(s // 4 + 1, s // 4 + 1)).repeat(4, 0).repeat(4, 1)[:s, :s]
    return base + coarse + rng.normal(0.0, 14.0, size=(s, s))


def _stripes(rng: np.random.Generator, s: int) -> np.ndarray:
    a, b = _two_levels(rng, 35)
    period = int(rng.integers(4, 11))
    y, x = np.mgrid[0:s, 0:s]
    coordinate = (y, x, x + y, x - y + s)[int(rng.integers(0, 4))]
    return np.where((coordinate // period) % 2 == 0, a, b).astype(np.float64)


def _gradient(rng: np.random.Generator, s: int) -> np.ndarray:
    a, b = _two_levels(rng, 60)
    angle = rng.uniform(0.0, 2 * math.pi)
    y, x = np.mgrid[0:s, 0:s] / max(1, s - 1)
    t = x * math.cos(angle) + y * math.sin(angle)
    t = (t - t.min()) / max(1e-9, float(t.max() - t.min()))
    return a + (b - a) * t


def _checker(rng: np.random.Generator, s: int) -> np.ndarray:
    a, b = _two_levels(rng, 35)
    cell = int(rng.integers(4, 11))
    y, x = np.mgrid[0:s, 0:s]
    return np.where(((x // cell) + (y // cell)) % 2 == 0, a, b).astype(np.float64)


def _dots(rng: np.random.Generator, s: int) -> np.ndarray:
    a, b = _two_levels(rng, 40)
    out = np.full((s, s), float(a))
    n = s * s // 30
    ys, xs = rng.integers(0, s, size=n), rng.integers(0, s, size=n)
    for dy in (0, 1):  # 2x2 dots
        for dx in (0, 1):
            out[np.minimum(ys + dy, s - 1), np.minimum(xs + dx, s - 1)] = b
    return out


TEXTURES: dict[str, Texture] = {
    "noise": _noise,
    "stripes": _stripes,
    "gradient": _gradient,
    "checker": _checker,
    "dots": _dots,
}


def _background(rng: np.random.Generator, kind: str, s: int) -> Image.Image:
    grey = TEXTURES[kind](rng, s)
    tint = rng.integers(-8, 9, size=3)  # a faint cast, so backgrounds are not all neutral grey
    rgb = np.clip(grey[:, :, None] + tint[None, None, :], GREY_LO - 10, GREY_HI + 10).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _outline(shape: str, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """Polygon of a shape filling the box (x0, y0)-(x1, y1); circle and cross are drawn separately."""
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if shape == "square":
        m = 0.08 * w  # a square filling its box looks larger than the other shapes
        return [(x0 + m, y0 + m), (x1 - m, y0 + m), (x1 - m, y1 - m), (x0 + m, y1 - m)]
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if shape == "star":
        outer, inner = w / 2, 0.45 * w / 2
        pts = []
        for k in range(10):
            r = outer if k % 2 == 0 else inner
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + r * math.cos(a), cy + 0.08 * h + r * math.sin(a)))
        return pts
    raise ValueError(f"no outline for shape {shape!r}")


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    k = SUPERSAMPLE
    x0, y0, x1, y1 = (v * k for v in obj.bbox)
    x1, y1 = x1 - 1, y1 - 1  # PIL boxes are inclusive
    fill = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif obj.shape == "cross":
        t = (x1 - x0) / 6  # arm half-width: arms one third of the side
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.rectangle((x0, cy - t, x1, cy + t), fill=fill)
        draw.rectangle((cx - t, y0, cx + t, y1), fill=fill)
    else:
        draw.polygon(_outline(obj.shape, x0, y0, x1, y1), fill=fill)


def render_scene(scene: SceneGraph, rng: np.random.Generator) -> Image.Image:
    """RGB image of `scene`, `scene.image_size` square; `rng` draws the background texture."""
    s = scene.image_size
    big = _background(rng, scene.background, s).resize((s * SUPERSAMPLE, s * SUPERSAMPLE), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(big)
    for obj in scene.objects:
        _draw_object(draw, obj)
    return big.resize((s, s), Image.Resampling.BOX)


def encode_jpeg(image: Image.Image) -> bytes:
    """JPEG without chroma subsampling: at 64 px, 4:2:0 would bleed an object's colour into its background."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()
