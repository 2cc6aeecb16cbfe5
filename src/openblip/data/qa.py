"""Templated VQA questions with exact answers, read off a scene graph.

A question is asked only when its answer is unique: "what color is the circle?" only if every
circle in the scene has one colour, "what is left of the blue square?" only if exactly one object
is. Counts are answered with digits, as in VQA v2.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from openblip.data.grammar import noun_phrase
from openblip.data.scene import SceneGraph, relation_holds
from openblip.data.vocab import COLOURS, PLURALS, RELATION_PHRASES, RELATIONS, SHAPES


class QuestionType(str, enum.Enum):
    COLOUR = "colour"
    SHAPE = "shape"
    SIZE = "size"
    COUNT = "count"
    EXISTS = "exists"
    RELATION = "relation"
    POSITION = "position"


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    type: QuestionType

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "type": self.type.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QA:
        return cls(str(d["question"]), str(d["answer"]), QuestionType(d["type"]))


def _choice(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(0, len(items)))]


def scene_questions(scene: SceneGraph, rng: np.random.Generator) -> tuple[QA, ...]:
    """At most one question of each type (two for `exists`: one yes, one no), when one applies."""
    objs = scene.objects
    kinds = scene.kinds()
    out: list[QA] = []

    colours_of = {s: {c for c, t in kinds if t == s} for s in SHAPES}
    shapes_of = {c: {s for d, s in kinds if d == c} for c in COLOURS}

    one_colour = [s for s in SHAPES if len(colours_of[s]) == 1]
    if one_colour:
        s = _choice(rng, one_colour)
        c = next(iter(colours_of[s]))
        plural = len(kinds[(c, s)]) > 1
        q = f"what color are the {PLURALS[s]}?" if plural else f"what color is the {s}?"
        out.append(QA(q, c, QuestionType.COLOUR))

    one_shape = [c for c in COLOURS if len(shapes_of[c]) == 1]
    if one_shape:
        c = _choice(rng, one_shape)
        s = next(iter(shapes_of[c]))
        plural = len(kinds[(c, s)]) > 1
        q = f"what shape are the {c} objects?" if plural else f"what shape is the {c} object?"
        out.append(QA(q, s, QuestionType.SHAPE))

    singles = [idx[0] for idx in kinds.values() if len(idx) == 1]
    if singles:
        o = objs[_choice(rng, singles)]
        out.append(QA(f"what size is the {o.colour} {o.shape}?", o.size, QuestionType.SIZE))
        o = objs[_choice(rng, singles)]
        out.append(QA(f"where is the {o.colour} {o.shape}?", o.region, QuestionType.POSITION))

    shape = _choice(rng, list(SHAPES)) if rng.random() < 0.25 else objs[int(rng.integers(0, len(objs)))].shape
    n = sum(o.shape == shape for o in objs)
    out.append(QA(f"how many {PLURALS[shape]} are there?", str(n), QuestionType.COUNT))

    present = _choice(rng, list(kinds))
    out.append(QA(f"is there {noun_phrase(present, 1)}?", "yes", QuestionType.EXISTS))
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in kinds]
    c, s = _choice(rng, absent)
    out.append(QA(f"is there {noun_phrase((c, s), 1)}?", "no", QuestionType.EXISTS))

    askable = []
    for r in singles:
        for rel in RELATIONS:
            match = [o for i, o in enumerate(objs) if i != r and relation_holds(o, rel, objs[r])]
            if len(match) == 1:
                askable.append((r, rel, match[0]))
    if askable:
        r, rel, o = _choice(rng, askable)
        ref = objs[r]
        q = f"what is {RELATION_PHRASES[rel]} the {ref.colour} {ref.shape}?"
        out.append(QA(q, f"{o.colour} {o.shape}", QuestionType.RELATION))
    return tuple(out)
