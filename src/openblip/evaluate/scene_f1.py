"""Scene attribute F1: how many facts a caption states correctly about a synthetic scene.

Definition. A caption is lowercased, stripped of punctuation and parsed with the synthetic
grammar's vocabulary (`openblip.data.vocab`, plus the spellings color/center/middle/big/little/tiny)
into noun phrases `[number|a|the] [size] [colour] shape [position]`, relations between two noun
phrases ("A to the left of B", "A right of B", "A above B", "A below B") and a background ("on a
striped background"). Each yields facts, where (c, s) is the phrase's colour (or any colour when the
phrase names none) and shape:

    ("object", c, s)                 an object of colour c and shape s exists
    ("count", n, c, s)               exactly n such objects (only for an explicit number: one, two, 3 ...)
    ("size", z, c, s)                one of them has size z
    ("position", r, c, s)            one of them lies in region r: "top left" is that grid cell,
                                     "top"/"bottom" a row, "left"/"right" a column, "centre" the middle cell
    ("relation", p, cA, sA, cB, sB)  every (cA, sA) object is p (left_of / above) of every (cB, sB)
                                     object; "right of" and "below" are stored swapped as left_of / above
    ("background", kind)             the background texture is `kind`

The scene's core facts are ("object", c, s) for each (colour, shape) present and
("count", n, c, s) for each one present n >= 2 times: what a complete caption must name.

    precision = |caption facts true in the scene| / |caption facts|     (0 when there are none)
    recall    = |caption facts ∩ core facts| / |core facts|
    f1        = 2 P R / (P + R)                                          (0 when P + R = 0)

Facts are sets, so repeating a phrase earns nothing. Recall asks whether the caption names
everything in the image; precision whether everything it says (sizes, positions, relations,
background included) is true. A caption with no vocabulary words scores 0; every reference
caption of the grammar has precision 1. Corpus scores are means over images.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from openblip.data.scene import SceneGraph, SceneObject, relation_holds
from openblip.data.vocab import BACKGROUNDS, COLOURS, NUMBER_WORDS, PLURALS, SHAPES

Fact = tuple[str | int | None, ...]


class SceneF1(NamedTuple):
    precision: float
    recall: float
    f1: float


_SHAPE_WORDS = {s: s for s in SHAPES} | {p: s for s, p in PLURALS.items()}
_SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
_NUMBERS = {w: n for n, w in NUMBER_WORDS.items()} | {str(n): n for n in range(1, 10)}
_ADJECTIVE_BG = {adj: kind for kind, adj in BACKGROUNDS.items()} | {"checked": "checker"}
_LINKS = {"is", "are", "which", "that", "located", "placed", "sits", "sitting", "lies"}

# Multi-word phrases become single tokens before parsing: relations first ("to the left of" must
# not read as the position "to the left"), then corner positions, then sides.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:is |are )?(?:to the |on the )?(left|right) of\b"), r" rel=\1_of "),
    (re.compile(r"\b(?:is |are )?(?:above|over|on top of)\b"), " rel=above "),
    (re.compile(r"\b(?:is |are )?(?:below|under|underneath|beneath)\b"), " rel=below "),
    (re.compile(r"\b(?:in|at|on) the (top|bottom) (left|right)(?: corner)?\b"), r" pos=\1_\2 "),
    (re.compile(r"\b(?:in|at|on|to) the (top|bottom|left|right)(?: side| edge)?\b"), r" pos=\1 "),
    (re.compile(r"\b(?:in|at) the (?:centre|center|middle)\b"), " pos=centre "),
    (re.compile(r"\b(" + "|".join(_ADJECTIVE_BG) + r") background\b"), r" bg=\1 "),
)


@dataclass
class _Phrase:
    colour: str | None
    shape: str
    count: int | None
    size: str | None
    position: str | None = None


def _tokens(caption: str) -> list[str]:
    text = " " + re.sub(r"[^a-z0-9 ]", " ", caption.lower()).replace("color", "colour") + " "
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    return text.split()


def caption_facts(caption: str) -> set[Fact]:
    """The facts a caption states (see the module docstring)."""
    phrases: list[_Phrase] = []
    relations: list[tuple[str, int, int]] = []
    facts: set[Fact] = set()
    count: int | None = None
    size: str | None = None
    colour: str | None = None
    pending_position: str | None = None
    pending_relation: tuple[str, int] | None = None
    since_phrase: list[str] = []  # tokens since the last noun phrase ended
    for tok in _tokens(caption):
        if tok in _NUMBERS:
            count = _NUMBERS[tok]
        elif tok in _SIZE_WORDS:
            size = _SIZE_WORDS[tok]
        elif tok in COLOURS:
            colour = tok
        elif tok in _SHAPE_WORDS:
            phrases.append(_Phrase(colour, _SHAPE_WORDS[tok], count, size, pending_position))
            if pending_relation is not None:
                relations.append((pending_relation[0], pending_relation[1], len(phrases) - 1))
            count = size = colour = pending_position = pending_relation = None
            since_phrase = []
            continue
        else:
            count = size = colour = None
            if tok.startswith("pos="):
                where = tok[4:].replace("_", " ")
                attach = phrases and phrases[-1].position is None and set(since_phrase) <= _LINKS
                if attach:
                    phrases[-1].position = where
                else:
                    pending_position = where
            elif tok.startswith("rel=") and phrases:
                pending_relation = (tok[4:], len(phrases) - 1)
            elif tok.startswith("bg="):
                facts.add(("background", _ADJECTIVE_BG[tok[3:]]))
        since_phrase.append(tok)
    for p in phrases:
        facts.add(("object", p.colour, p.shape))
        if p.count is not None:
            facts.add(("count", p.count, p.colour, p.shape))
        if p.size is not None:
            facts.add(("size", p.size, p.colour, p.shape))
        if p.position is not None:
            facts.add(("position", p.position, p.colour, p.shape))
    for rel, a, b in relations:
        if rel in ("right_of", "below"):  # one direction per relation: A right of B == B left of A
            rel, a, b = ("left_of" if rel == "right_of" else "above"), b, a
        pa, pb = phrases[a], phrases[b]
        facts.add(("relation", rel, pa.colour, pa.shape, pb.colour, pb.shape))
    return facts


def core_facts(scene: SceneGraph) -> set[Fact]:
    """What a complete caption must name: each (colour, shape) present, and counts of 2 or more."""
    out: set[Fact] = set()
    for (colour, shape), idx in scene.kinds().items():
        out.add(("object", colour, shape))
        if len(idx) > 1:
            out.add(("count", len(idx), colour, shape))
    return out


def _matching(scene: SceneGraph, colour: object, shape: object) -> list[SceneObject]:
    return [o for o in scene.objects if o.shape == shape and (colour is None or o.colour == colour)]


def _in_region(obj: SceneObject, region: str) -> bool:
    row, col = obj.cell
    words = region.split()
    if words == ["centre"]:
        return (row, col) == (1, 1)
    rows = {"top": 0, "bottom": 2}
    cols = {"left": 0, "right": 2}
    return all(row == rows[w] if w in rows else col == cols[w] for w in words)


def fact_holds(fact: Fact, scene: SceneGraph) -> bool:
    """Whether one caption fact is true of the scene."""
    kind = fact[0]
    if kind == "background":
        return fact[1] == scene.background
    if kind == "relation":
        _, rel, ca, sa, cb, sb = fact
        a, b = _matching(scene, ca, sa), _matching(scene, cb, sb)
        return bool(a and b) and all(relation_holds(x, str(rel), y) for x in a for y in b)
    objs = _matching(scene, fact[-2], fact[-1])
    if kind == "object":
        return bool(objs)
    if kind == "count":
        return len(objs) == fact[1]
    if kind == "size":
        return any(o.size == fact[1] for o in objs)
    if kind == "position":
        return any(_in_region(o, str(fact[1])) for o in objs)
    raise ValueError(f"unknown fact {fact!r}")


def scene_attribute_f1(caption: str, scene: SceneGraph) -> SceneF1:
    """(precision, recall, f1) of one caption against its scene; see the module docstring."""
    facts = caption_facts(caption)
    core = core_facts(scene)
    precision = sum(fact_holds(f, scene) for f in facts) / len(facts) if facts else 0.0
    recall = len(facts & core) / len(core) if core else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return SceneF1(precision, recall, f1)


def corpus_scene_f1(captions: Sequence[str], scenes: Sequence[SceneGraph]) -> SceneF1:
    """Mean precision, recall and F1 over images (one caption per scene)."""
    if len(captions) != len(scenes):
        raise ValueError(f"{len(captions)} captions for {len(scenes)} scenes")
    if not scenes:
        raise ValueError("no captions to score")
    scores = [scene_attribute_f1(c, s) for c, s in zip(captions, scenes)]
    n = len(scores)
    return SceneF1(*(sum(s[k] for s in scores) / n for k in range(3)))
