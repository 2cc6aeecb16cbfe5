from __future__ import annotations

import numpy as np
import pytest

from openblip.data.grammar import reference_captions
from openblip.data.scene import SceneGraph, SceneObject, all_relations, sample_scene
from openblip.data.vocab import COLOURS, NUMBER_WORDS, PLURALS, SHAPES
from openblip.evaluate.scene_f1 import (
    caption_facts,
    core_facts,
    corpus_scene_f1,
    fact_holds,
    scene_attribute_f1,
)


def _scene() -> SceneGraph:
    """A small red circle top left, two large blue squares (centre, bottom right), striped."""
    objs = (
        SceneObject("circle", "red", "small", (0, 0), (2, 2, 12, 12)),
        SceneObject("square", "blue", "large", (1, 1), (22, 22, 39, 39)),
        SceneObject("square", "blue", "large", (2, 2), (44, 44, 61, 61)),
    )
    return SceneGraph(64, "stripes", objs, all_relations(objs))


def test_parses_the_grammar_into_facts() -> None:
    facts = caption_facts(
        "At the top left there is a small red circle, and the red circle is to the left of two large Blue squares "
        "on a striped background."
    )
    assert facts == {
        ("object", "red", "circle"),
        ("size", "small", "red", "circle"),
        ("position", "top left", "red", "circle"),
        ("object", "blue", "square"),
        ("count", 2, "blue", "square"),
        ("size", "large", "blue", "square"),
        ("relation", "left_of", "red", "circle", "blue", "square"),
        ("background", "stripes"),
    }
    # "right of" / "below" are stored in the left_of / above direction; positions attach forward or back
    below = caption_facts("a blue square below a red circle")
    assert ("relation", "above", "red", "circle", "blue", "square") in below
    assert ("position", "centre", None, "square") in caption_facts("a square in the middle")
    assert ("count", 3, "red", "star") in caption_facts("3 red stars")
    assert caption_facts("") == set() == caption_facts("click to enlarge")


def test_exact_scores_on_a_known_scene() -> None:
    scene = _scene()
    assert core_facts(scene) == {
        ("object", "red", "circle"),
        ("object", "blue", "square"),
        ("count", 2, "blue", "square"),
    }
    assert scene_attribute_f1("a red circle and two blue squares", scene) == (1.0, 1.0, 1.0)
    # facts: object red circle (T), object green square (F), count 2 green squares (F)
    p, r, f = scene_attribute_f1("a red circle and two green squares", scene)
    assert (p, r) == (1 / 3, 1 / 3) and f == pytest.approx(1 / 3)
    p, r, f = scene_attribute_f1("a red circle and a green square", scene)
    assert (p, r) == (0.5, 1 / 3) and f == pytest.approx(0.4)
    p, r, _ = scene_attribute_f1("the red circle is to the right of a blue square in the centre", scene)
    # facts: object red circle (T), object blue square (T), position centre blue square (T), relation (F)
    assert (p, r) == (0.75, 2 / 3)
    assert scene_attribute_f1("three blue squares", scene).precision == 0.5  # count is exact
    assert scene_attribute_f1("a large red circle on a dotted background", scene).precision == 1 / 3
    assert scene_attribute_f1("", scene) == (0.0, 0.0, 0.0)


def test_relation_must_hold_for_every_object_of_a_kind() -> None:
    scene = _scene()
    assert fact_holds(("relation", "left_of", "red", "circle", "blue", "square"), scene)
    assert fact_holds(("relation", "above", None, "circle", None, "square"), scene)
    # one blue square (centre) is left of the other (bottom right), but not all of them are
    assert not fact_holds(("relation", "left_of", "blue", "square", "blue", "square"), scene)
    assert not fact_holds(("relation", "left_of", "green", "circle", "blue", "square"), scene)
    assert fact_holds(("position", "top", "red", "circle"), scene)  # a row contains its corners
    assert not fact_holds(("position", "top right", "red", "circle"), scene)


def _corpus(n: int) -> tuple[list[SceneGraph], list[tuple[str, ...]]]:
    rng = np.random.default_rng(8)
    scenes = [sample_scene(rng, 64) for _ in range(n)]
    return scenes, [reference_captions(s, rng) for s in scenes]


def test_references_score_high_random_and_blank_near_zero() -> None:
    scenes, refs = _corpus(150)
    for k in range(5):
        score = corpus_scene_f1([r[k] for r in refs], scenes)
        assert score.precision == 1.0
        assert score.f1 > (0.99 if k == 0 else 0.7), (k, score)
    rng = np.random.default_rng(0)
    random_captions = []
    for _ in scenes:
        n = int(rng.integers(1, 4))
        words = []
        for _ in range(n):
            count = int(rng.integers(1, 4))
            colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(list(SHAPES)))
            words.append(f"{NUMBER_WORDS[count]} {colour} {PLURALS[shape] if count > 1 else shape}")
        random_captions.append(" and ".join(words))
    assert corpus_scene_f1(random_captions, scenes).f1 < 0.1
    shuffled = [refs[(i + 1) % len(refs)][0] for i in range(len(refs))]  # another image's caption
    assert corpus_scene_f1(shuffled, scenes).f1 < 0.15
    assert corpus_scene_f1([""] * len(scenes), scenes) == (0.0, 0.0, 0.0)


def test_corpus_checks_lengths() -> None:
    with pytest.raises(ValueError, match="2 captions for 1 scenes"):
        corpus_scene_f1(["a", "b"], [_scene()])
    with pytest.raises(ValueError, match="no captions"):
        corpus_scene_f1([], [])
