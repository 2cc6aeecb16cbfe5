"""Reference captions against their scene graphs, checked with regexes independent of the
scene F1 parser: every colour+shape, count, size, position and relation a caption states is true."""

from __future__ import annotations

import re

import numpy as np

from openblip.data.grammar import NUM_REFERENCES, noun_phrase, reference_captions
from openblip.data.scene import SceneGraph, relation_holds, sample_scene
from openblip.data.vocab import BACKGROUNDS, COLOURS, NUMBER_WORDS, PLURALS, SHAPES

SINGULAR = {p: s for s, p in PLURALS.items()} | {s: s for s in SHAPES}
COLOUR_RE = "|".join(COLOURS)
SHAPE_RE = "|".join(sorted(SINGULAR, key=len, reverse=True))
NP = rf"(?:(a|an|the|one|two|three|four) )?(?:(small|large) )?({COLOUR_RE}) ({SHAPE_RE})"
REGION_RE = "top left|top right|bottom left|bottom right|top|bottom|left|right|centre|middle"
OBJ = rf"(?:a|an) (?:small |large )?(?P<colour>{COLOUR_RE}) (?P<shape>{SHAPE_RE})"
POSITION_AFTER = rf"{OBJ} (?:in|at|on) the (?P<region>{REGION_RE})(?: corner)?$"
POSITION_BEFORE = rf"^(?:in|at|on) the (?P<region>{REGION_RE})(?: corner)? there is {OBJ}$"
REL = {"to the left of": "left_of", "to the right of": "right_of", "above": "above", "below": "below"}


def _pairs() -> list[tuple[SceneGraph, tuple[str, ...]]]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(150):
        scene = sample_scene(rng, 96)
        out.append((scene, reference_captions(scene, rng)))
    return out


def test_five_distinct_lowercase_references() -> None:
    for _, refs in _pairs():
        assert len(refs) == NUM_REFERENCES == len(set(refs))
        assert all(r == r.lower() and not r.endswith(".") and "  " not in r for r in refs)


def test_every_noun_phrase_is_true() -> None:
    for scene, refs in _pairs():
        kinds = scene.kinds()
        for ref in refs:
            matches = re.findall(NP, ref)
            assert matches, ref
            for det, size, colour, shape_word in matches:
                kind = (colour, SINGULAR[shape_word])
                assert kind in kinds, (ref, kind)
                n = len(kinds[kind])
                assert (shape_word in PLURALS.values()) == (n > 1), ref
                if det in NUMBER_WORDS.values():
                    assert NUMBER_WORDS[n] == det, ref
                if size:
                    assert all(scene.objects[i].size == size for i in kinds[kind]), ref
                if det in ("a", "an"):
                    assert det == ("an" if (size or colour)[0] in "aeiou" else "a"), ref


def test_reference_zero_lists_every_object_and_backgrounds_are_right() -> None:
    for scene, refs in _pairs():
        named = {(c, SINGULAR[s]) for _, _, c, s in re.findall(NP, refs[0])}
        assert named == set(scene.kinds()), refs[0]
        for ref in refs:
            for adj in re.findall(r"(\w+) background", ref):
                assert adj == BACKGROUNDS[scene.background], ref


def test_relations_and_positions_are_true() -> None:
    rels = positions = 0
    for scene, refs in _pairs():
        objs = {o.kind: o for o in scene.objects}
        for ref in refs:
            for _, _, ca, sa, phrase, _, _, cb, sb in re.findall(
                rf"{NP} (?:is )?(to the left of|to the right of|above|below) {NP}", ref
            ):
                rels += 1
                assert relation_holds(objs[(ca, SINGULAR[sa])], REL[phrase], objs[(cb, SINGULAR[sb])]), ref
            m = re.search(POSITION_AFTER, ref) or re.search(POSITION_BEFORE, ref)
            if m:
                positions += 1
                region = "centre" if m["region"] == "middle" else m["region"]
                assert objs[(m["colour"], SINGULAR[m["shape"]])].region == region, ref
    assert rels > 20 and positions > 20


def test_noun_phrase_forms() -> None:
    assert noun_phrase(("orange", "star"), 1) == "an orange star"
    assert noun_phrase(("orange", "star"), 1, "large") == "a large orange star"
    assert noun_phrase(("red", "cross"), 3, "small") == "three small red crosses"
    assert noun_phrase(("red", "cross"), 1, definite=True) == "the red cross"
