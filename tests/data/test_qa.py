"""Every templated question's answer, recomputed from the scene graph by parsing the question."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from openblip.data.qa import QA, QuestionType, scene_questions
from openblip.data.scene import SceneGraph, relation_holds, sample_scene
from openblip.data.vocab import PLURALS, RELATION_PHRASES

SINGULAR = {p: s for s, p in PLURALS.items()}
PHRASE_REL = {v: k for k, v in RELATION_PHRASES.items()}


def _expected(q: QA, scene: SceneGraph) -> str:
    objs = scene.objects
    text = q.question
    if m := re.fullmatch(r"what color (?:is|are) the (\w+)\?", text):
        shape = SINGULAR.get(m[1], m[1])
        (colour,) = {o.colour for o in objs if o.shape == shape}
        return colour
    if m := re.fullmatch(r"what shape (?:is|are) the (\w+) objects?\?", text):
        (shape,) = {o.shape for o in objs if o.colour == m[1]}
        return shape
    if m := re.fullmatch(r"what size is the (\w+) (\w+)\?", text):
        (o,) = [o for o in objs if o.kind == (m[1], m[2])]
        return o.size
    if m := re.fullmatch(r"where is the (\w+) (\w+)\?", text):
        (o,) = [o for o in objs if o.kind == (m[1], m[2])]
        return o.region
    if m := re.fullmatch(r"how many (\w+) are there\?", text):
        return str(sum(o.shape == SINGULAR[m[1]] for o in objs))
    if m := re.fullmatch(r"is there an? (\w+) (\w+)\?", text):
        return "yes" if any(o.kind == (m[1], m[2]) for o in objs) else "no"
    if m := re.fullmatch(r"what is (.+) the (\w+) (\w+)\?", text):
        (ref,) = [o for o in objs if o.kind == (m[2], m[3])]
        rel = PHRASE_REL[m[1]]
        (o,) = [o for o in objs if o is not ref and relation_holds(o, rel, ref)]
        return f"{o.colour} {o.shape}"
    raise AssertionError(f"unparsed question {text!r}")


def test_answers_match_scene_graph() -> None:
    rng = np.random.default_rng(4)
    types: Counter[QuestionType] = Counter()
    answers: Counter[str] = Counter()
    for _ in range(200):
        scene = sample_scene(rng, 64)
        qas = scene_questions(scene, rng)
        assert len({q.question for q in qas}) == len(qas)
        for q in qas:
            assert q.answer == _expected(q, scene), (q, scene)
            types[q.type] += 1
            answers[q.answer] += 1
            assert QA.from_json(q.to_json()) == q
    assert set(types) == set(QuestionType)
    assert answers["yes"] == answers["no"] == 200
    assert answers["0"] > 0 and answers["2"] > 0  # absent shapes and groups are both asked about
