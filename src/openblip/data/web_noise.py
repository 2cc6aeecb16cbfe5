"""Web alt-text noise: the corruptions CapFilt's filter should learn to remove.

BLIP (section 3.3) bootstraps because web alt-texts often do not describe their image. The web
split mimics that with a known label per text, so a filter's decisions can be scored exactly:

- clean:          a reference caption of the image;
- other_image:    a caption of a different image with different objects (a mismatched pair);
- attribute_swap: a reference with one attribute made false (colour, shape, size, count, side);
- generic:        boilerplate that describes nothing ("IMG_0412.jpg", "click to enlarge");
- truncated:      the first words of a reference, cut mid-sentence.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

import numpy as np

from openblip.data.grammar import article
from openblip.data.scene import SceneGraph
from openblip.data.vocab import COLOURS, NUMBER_WORDS, PLURALS, SHAPES, SIZES


class WebNoise(str, enum.Enum):
    CLEAN = "clean"
    OTHER_IMAGE = "other_image"
    ATTRIBUTE_SWAP = "attribute_swap"
    GENERIC = "generic"
    TRUNCATED = "truncated"


NOISE_TYPES: tuple[WebNoise, ...] = (
    WebNoise.OTHER_IMAGE,
    WebNoise.ATTRIBUTE_SWAP,
    WebNoise.GENERIC,
    WebNoise.TRUNCATED,
)

_SINGULAR = {p: s for s, p in PLURALS.items()} | {s: s for s in SHAPES}
_OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top", "above": "below", "below": "above"}
_GENERIC: tuple[Callable[[np.random.Generator], str], ...] = (
    lambda r: f"IMG_{int(r.integers(0, 10000)):04d}.jpg",
    lambda r: f"DSC{int(r.integers(0, 100000)):05d}.JPG",
    lambda r: f"image{int(r.integers(1, 1000))}.png",
    lambda r: f"screenshot {int(r.integers(2008, 2024))}-{int(r.integers(1, 13)):02d}-{int(r.integers(1, 29)):02d}",
    lambda r: "click to enlarge",
    lambda r: "stock photo",
    lambda r: "untitled",
    lambda r: "view full size",
    lambda r: "no description available",
    lambda r: "thumbnail",
    lambda r: "copyright all rights reserved",
    lambda r: "product image",
)


def plan_web_noise(n: int, rate: float, rng: np.random.Generator) -> list[WebNoise]:
    """Labels for n texts: exactly round(rate * n) noisy, the noise types as equal as possible,
    placed at random indices."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"web noise rate must be in [0, 1], got {rate}")
    k = math.floor(rate * n + 0.5)
    offset = int(rng.integers(0, len(NOISE_TYPES)))
    labels = [WebNoise.CLEAN] * n
    for rank, index in enumerate(rng.permutation(n)[:k]):
        labels[int(index)] = NOISE_TYPES[(rank + offset) % len(NOISE_TYPES)]
    return labels


def generic_text(rng: np.random.Generator) -> str:
    return _GENERIC[int(rng.integers(0, len(_GENERIC)))](rng)


def truncate(caption: str, rng: np.random.Generator) -> str:
    """The first 1..half of the words, sometimes with a trailing ellipsis as web pages cut them."""
    words = caption.split()
    if len(words) < 2:
        raise ValueError(f"cannot truncate a one-word caption: {caption!r}")
    keep = int(rng.integers(1, (len(words) + 1) // 2 + 1))
    return " ".join(words[:keep]) + ("..." if rng.random() < 0.5 else "")


def attribute_swap(caption: str, scene: SceneGraph, rng: np.random.Generator) -> str:
    """Change one attribute word of a grammar caption so the caption becomes false for `scene`.

    Colours and shapes are swapped for ones that make a (colour, shape) absent from the scene;
    sizes, counts and sides (left/right, top/bottom, above/below) for their opposites, which are
    false because a kind's objects share one size and count, and cells never overlap.
    """
    words = caption.split()
    kinds = scene.kinds()
    edits: dict[str, list[tuple[int, list[str]]]] = {}
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in COLOURS and nxt in _SINGULAR:
            shape = _SINGULAR[nxt]
            edits.setdefault("colour", []).append((i, [c for c in COLOURS if (c, shape) not in kinds]))
        elif w in _SINGULAR and i > 0 and words[i - 1] in COLOURS:
            colour, plural = words[i - 1], w != _SINGULAR[w]
            options = [s for s in SHAPES if (colour, s) not in kinds]
            edits.setdefault("shape", []).append((i, [PLURALS[s] if plural else s for s in options]))
        elif w in SIZES:
            edits.setdefault("size", []).append((i, [s for s in SIZES if s != w]))
        elif w in _OPPOSITE:
            edits.setdefault("side", []).append((i, [_OPPOSITE[w]]))
        elif w in NUMBER_WORDS.values() and w != "one":
            edits.setdefault("count", []).append((i, [v for k, v in NUMBER_WORDS.items() if k > 1 and v != w]))
    if not edits:
        raise ValueError(f"no attribute to swap in {caption!r}")
    attr = sorted(edits)[int(rng.integers(0, len(edits)))]
    i, options = edits[attr][int(rng.integers(0, len(edits[attr])))]
    words[i] = options[int(rng.integers(0, len(options)))]
    for j in range(len(words) - 1):  # keep "a"/"an" agreeing with the (possibly new) next word
        if words[j] in ("a", "an"):
            words[j] = article(words[j + 1])
    return " ".join(words)


def web_text(
    noise: WebNoise,
    references: tuple[str, ...],
    scene: SceneGraph,
    rng: np.random.Generator,
    other_caption: Callable[[], str | None],
) -> tuple[str, WebNoise]:
    """The alt-text for one web image and its label. `other_caption` gives a caption of a
    different-looking image, or None when there is none; the text is then generic, and so labelled."""
    clean = references[int(rng.integers(0, len(references)))]
    if noise is WebNoise.CLEAN:
        return clean, noise
    if noise is WebNoise.OTHER_IMAGE:
        other = other_caption()
        return (other, noise) if other is not None else (generic_text(rng), WebNoise.GENERIC)
    if noise is WebNoise.ATTRIBUTE_SWAP:
        return attribute_swap(clean, scene, rng), noise
    if noise is WebNoise.GENERIC:
        return generic_text(rng), noise
    return truncate(clean, rng), noise
