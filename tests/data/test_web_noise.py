from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from openblip.data.grammar import reference_captions
from openblip.data.scene import sample_scene
from openblip.data.vocab import BACKGROUNDS, COLOURS, NUMBER_WORDS, PLURALS, SHAPES, SIZES
from openblip.data.web_noise import (
    NOISE_TYPES,
    WebNoise,
    attribute_swap,
    generic_text,
    plan_web_noise,
    truncate,
    web_text,
)
from openblip.evaluate.scene_f1 import scene_attribute_f1

VOCAB = set(COLOURS) | set(SHAPES) | set(PLURALS.values()) | set(SIZES) | set(BACKGROUNDS.values())


def _attribute(word: str) -> str:
    if word in COLOURS:
        return "colour"
    if word in SHAPES or word in PLURALS.values():
        return "shape"
    if word in SIZES:
        return "size"
    if word in NUMBER_WORDS.values():
        return "count"
    assert word in ("left", "right", "top", "bottom", "above", "below"), word
    return "side"


@pytest.mark.parametrize(("n", "rate"), [(50, 0.4), (7, 0.5), (1000, 0.13), (10, 0.0), (10, 1.0)])
def test_plan_has_exact_rate_and_balanced_types(n: int, rate: float) -> None:
    labels = plan_web_noise(n, rate, np.random.default_rng(0))
    counts = Counter(labels)
    noisy = n - counts[WebNoise.CLEAN]
    assert noisy == int(rate * n + 0.5)
    per_type = [counts[t] for t in NOISE_TYPES]
    assert sum(per_type) == noisy and max(per_type) - min(per_type) <= 1


def test_plan_rejects_bad_rate() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plan_web_noise(10, 1.5, np.random.default_rng(0))


def test_attribute_swap_makes_every_caption_false() -> None:
    rng = np.random.default_rng(6)
    kinds_of_change: Counter[str] = Counter()
    for _ in range(150):
        scene = sample_scene(rng, 64)
        for ref in reference_captions(scene, rng):
            assert scene_attribute_f1(ref, scene).precision == 1.0
            swapped = attribute_swap(ref, scene, rng)
            old, new = ref.split(), swapped.split()
            assert len(old) == len(new)
            changed = [(a, b) for a, b in zip(old, new) if a != b and a not in ("a", "an")]
            assert len(changed) == 1, (ref, swapped)
            kinds_of_change[_attribute(changed[0][0])] += 1
            assert scene_attribute_f1(swapped, scene).precision < 1.0, (ref, swapped)
            assert not re.search(r"\ba [aeiou]|\ban [^aeiou]", swapped), swapped
    assert set(kinds_of_change) == {"colour", "shape", "size", "count", "side"}
    assert min(kinds_of_change.values()) > 5


def test_truncate_keeps_a_strict_prefix() -> None:
    rng = np.random.default_rng(0)
    caption = "there is a small red circle on a striped background"
    for _ in range(50):
        cut = truncate(caption, rng)
        words = cut.removesuffix("...").split()
        assert 1 <= len(words) <= 5 and caption.startswith(" ".join(words))
    with pytest.raises(ValueError, match="one-word"):
        truncate("circle", rng)


def test_generic_texts_describe_nothing() -> None:
    rng = np.random.default_rng(0)
    texts = {generic_text(rng) for _ in range(200)}
    assert len(texts) > 20
    for t in texts:
        assert not VOCAB & set(re.findall(r"[a-z]+", t.lower())), t


def test_web_text_labels_and_fallback() -> None:
    rng = np.random.default_rng(1)
    scene = sample_scene(rng, 64)
    refs = reference_captions(scene, rng)
    text, label = web_text(WebNoise.CLEAN, refs, scene, rng, lambda: None)
    assert label is WebNoise.CLEAN and text in refs
    text, label = web_text(WebNoise.OTHER_IMAGE, refs, scene, rng, lambda: "a blue star")
    assert (text, label) == ("a blue star", WebNoise.OTHER_IMAGE)
    text, label = web_text(WebNoise.OTHER_IMAGE, refs, scene, rng, lambda: None)
    assert label is WebNoise.GENERIC and text not in refs
