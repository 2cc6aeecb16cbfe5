"""Pictures of Grad-CAM maps (tasks/explain.py): the photo with a heat map over it, and a strip
of one such overlay per word, as PIL images, PNG bytes or a data URL.

The look follows LAVIS's `getAttMap` (the text-localization demo): the map is scaled to [0, 1]
by its maximum, resized smoothly to the picture, coloured with the "jet" colour map and blended
with weight m**0.7, so that cold regions show the photo itself. A map of zeros leaves the photo
as it is. numpy and PIL only (no matplotlib).

For pages that want one picture of one (image, text) pair (the CapFilt report, the server's web
page): `heatmap_png(model, tokenizer, image, text)` and `data_url(png)`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from openblip.model.blip import Blip
from openblip.tasks.explain import Explanation, WordMap, explain_loaded
from openblip.tokenizer import Tokenizer

OVERLAY_SIZE = 512  # longest side of the whole-text picture, in pixels
TILE_SIZE = 192  # longest side of each word's picture in the strip
TILES_PER_ROW = 6
_LABEL_HEIGHT = 22
_ALPHA_GAMMA = 0.7  # LAVIS getAttMap: blend weight = map ** 0.7


def display_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(width, height) scaled so that the longest side is `longest` (aspect ratio kept)."""
    w, h = size
    scale = longest / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def upsample(heat: np.ndarray, size: tuple[int, int], top: float | None = None) -> np.ndarray:
    """A (gh, gw) map -> (height, width) float32 in [0, 1]: bicubic, divided by `top` (default:
    the map's maximum), clipped (all zeros when there is nothing positive to show)."""
    grid = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    big = F.interpolate(grid, size=(size[1], size[0]), mode="bicubic", align_corners=False)[0, 0].numpy()
    scale = float(big.max()) if top is None else top
    return np.clip(big / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(big)


def jet(values: np.ndarray) -> np.ndarray:
    """The "jet" colour map: (...) in [0, 1] -> (..., 3) RGB in [0, 1] (blue, cyan, yellow, red)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # where red, green and blue peak
    return np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)


def overlay(image: Image.Image, heat: np.ndarray, longest: int = OVERLAY_SIZE, top: float | None = None) -> Image.Image:
    """The photo (any size; shown with its longest side `longest`) with the map over it, scaled
    so that `top` (default: the map's maximum) is the hottest colour."""
    size = display_size(image.size, longest)
    photo = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    level = upsample(heat, size, top)
    alpha = (level**_ALPHA_GAMMA)[..., None]
    mixed = (1.0 - alpha) * photo + alpha * jet(level)
    return Image.fromarray(np.clip(np.rint(mixed * 255.0), 0, 255).astype(np.uint8), "RGB")


def word_strip(
    image: Image.Image, words: Sequence[WordMap], tile: int = TILE_SIZE, per_row: int = TILES_PER_ROW
) -> Image.Image:
    """One overlay per word, left to right in text order (wrapped after `per_row`), each labelled
    with the word and its share of the text's map. All share one colour scale (the hottest
    point of any word), so that a word the match hardly rests on looks cold: scaled one by one,
    as LAVIS's demo does, a map of almost nothing looks as hot as the word that decides."""
    if not words:
        raise ValueError("no words to draw")
    w, h = display_size(image.size, tile)
    columns = min(per_row, len(words))
    rows = -(-len(words) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + _LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    top = max(float(w.map.max()) for w in words)
    for k, word in enumerate(words):
        x, y = (k % columns) * w, (k // columns) * (h + _LABEL_HEIGHT)
        sheet.paste(overlay(image, word.map, tile, top), (x, y))
        label = _fit(draw, f"{word.word} {100 * word.mass:.0f}%", font, w - 4)
        draw.text((x + w / 2, y + h + _LABEL_HEIGHT / 2), label, fill="black", font=font, anchor="mm")
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> str:
    """`text`, cut with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


@dataclass(frozen=True)
class Overlays:
    whole: Image.Image  # the photo with the whole text's map over it
    words: Image.Image  # one overlay per word, labelled (word_strip)


def render(image: Image.Image, explained: Explanation) -> Overlays:
    """Both pictures of one explanation (`BlipPipeline.explain` or tasks.explain) of `image`."""
    return Overlays(overlay(image, explained.map), word_strip(image, explained.words))


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def data_url(png_bytes: bytes) -> str:
    """PNG bytes -> "data:image/png;base64,..." for an <img src> in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def heatmap_png(
    model: Blip,
    tokenizer: Tokenizer,
    image: Image.Image,
    text: str,
    *,
    layer: int | None = None,
    longest: int = OVERLAY_SIZE,
) -> bytes:
    """PNG of the photo with the whole text's map over it: what a report or a web page shows for
    a pair (e.g. `<img src="{data_url(heatmap_png(...))}">`). `image` is a loaded RGB image; a
    text with nothing left after cleaning is a ValueError naming it. Needs an ITM-capable model."""
    (explained,) = explain_loaded(model, tokenizer, [image], [text], layer=layer)[0]
    return png(overlay(image, explained.map, longest))
