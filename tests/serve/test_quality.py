"""Quality signals: the statistics against hand-computed values, the rolling window, the
reference window (start-up, saved, loaded) and drift that shows when outputs change."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from openblip.serve.quality import (
    QualityMonitor,
    centroid_distance,
    kolmogorov_sf,
    ks_2samp,
    observe,
    repeats_a_word,
)


def test_repeats_a_word() -> None:
    assert repeats_a_word("a dog dog on a beach")
    assert not repeats_a_word("a dog on a beach with a dog")
    assert not repeats_a_word("")


def test_ks_statistic_by_hand() -> None:
    # ECDFs of {1,2,3} and {2.5,3.5,4.5,5.5}: the largest gap is at x = 3 (1 vs 1/4)
    d, p = ks_2samp([1, 2, 3], [2.5, 3.5, 4.5, 5.5])
    assert d == pytest.approx(3 / 4)
    assert 0 < p < 1
    assert ks_2samp([1, 2, 3], [1, 2, 3])[0] == 0.0
    assert ks_2samp([0.0, 0.1], [0.9, 1.0])[0] == 1.0


def test_kolmogorov_distribution_values() -> None:
    # P(K > 1.36) = 0.0494 and P(K > 1.63) = 0.0098: the usual 5 % and 1 % critical values
    assert kolmogorov_sf(1.3581) == pytest.approx(0.05, abs=5e-4)
    assert kolmogorov_sf(1.6276) == pytest.approx(0.01, abs=2e-4)
    assert kolmogorov_sf(0.0) == 1.0


def test_centroid_distance() -> None:
    a = np.array([[1.0, 0.0], [1.0, 0.0]])
    b = np.array([[0.0, 1.0]])
    assert centroid_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert centroid_distance(a, b) == pytest.approx(1.0)
    c = np.array([[math.cos(0.5), math.sin(0.5)]])
    assert centroid_distance(a, c) == pytest.approx(1 - math.cos(0.5))


def _feed(m: QualityMonitor, scores: np.ndarray, embeds: np.ndarray, text: str = "a dog on a beach") -> None:
    for s, e in zip(scores, embeds):
        m.record(observe("caption", text, float(s), e.astype(np.float32)))


def _unit(rng: np.random.Generator, n: int, centre: np.ndarray) -> np.ndarray:
    x = centre + 0.1 * rng.standard_normal((n, len(centre)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_drift_shows_when_scores_and_images_move(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    e0, e1 = np.eye(8)[0], np.eye(8)[1]
    m = QualityMonitor(window=100, low_score=0.3, reference_size=100, reference_file=None)
    _feed(m, rng.uniform(0.6, 1.0, 50), _unit(rng, 50, e0))
    assert m.summary()["drift"]["itm_score"] is None and "reference fills" in m.summary()["drift"]["note"]
    _feed(m, rng.uniform(0.6, 1.0, 50), _unit(rng, 50, e0))  # the reference is complete: 100
    _feed(m, rng.uniform(0.6, 1.0, 100), _unit(rng, 100, e0))  # same distribution
    same = m.summary()["drift"]
    assert same["reference"]["complete"] and same["itm_score"]["p_value"] > 0.001
    assert same["image_embedding"]["value"] < 0.01
    _feed(m, rng.uniform(0.0, 0.4, 100), _unit(rng, 100, e1))  # captions stop matching, other images
    moved = m.summary()
    assert moved["drift"]["itm_score"]["value"] > 0.9 and moved["drift"]["itm_score"]["p_value"] < 1e-6
    assert moved["drift"]["image_embedding"]["value"] > 0.5
    assert moved["drift"]["image_embedding"]["noise_floor"] < 0.01
    assert moved["last_n"]["low_score_share"] == pytest.approx(0.75, abs=0.1)  # P(U(0, 0.4) < 0.3), 100 draws
    assert moved["last_hour"]["outputs"] == 300

    saved = tmp_path / "ref.json"
    saved.write_text(json.dumps(m.reference()))
    loaded = QualityMonitor(window=100, low_score=0.3, reference_size=5, reference_file=saved)
    assert loaded.summary()["drift"]["reference"]["source"] == f"file: {saved}"
    _feed(loaded, rng.uniform(0.0, 0.4, 30), _unit(rng, 30, e1))
    assert loaded.summary()["drift"]["itm_score"]["value"] > 0.9  # compared with the file, at once


def test_window_and_degenerate_outputs() -> None:
    m = QualityMonitor(window=3, low_score=0.5, reference_size=10, reference_file=None)
    for text, s in [("", 0.1), ("a a b", 0.2), ("a b", 0.9), ("a b c d", 0.8)]:
        m.record(observe("caption", text, s, None))
    s = m.summary()
    assert s["last_n"]["outputs"] == 3 and s["last_hour"]["outputs"] == 4  # last N vs the last hour
    assert s["last_n"]["low_score_share"] == pytest.approx(1 / 3)
    assert s["last_hour"]["empty_share"] == 0.25 and s["last_hour"]["repeated_word_share"] == 0.25
    assert s["last_n"]["mean_words"] == pytest.approx(3.0)
    assert m.low_score_share() == pytest.approx(1 / 3)
    m.record_error("client_error")
    assert m.summary()["errors_last_hour"] == {"client_error": 1}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", "Expecting"),
        ('{"format": "x"}', "format"),
        ('{"format": "openblip-quality-reference/1", "itm_scores": [], "image_embeddings": []}', "neither"),
    ],
)
def test_bad_reference_files(tmp_path: Path, content: str, words: str) -> None:
    p = tmp_path / "ref.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=words):
        QualityMonitor(window=10, low_score=0.3, reference_size=10, reference_file=p)


def test_set_reference_fixes_the_window_at_once() -> None:
    rng = np.random.default_rng(1)
    m = QualityMonitor(window=50, low_score=0.3, reference_size=1000, reference_file=None)
    m.set_reference(list(rng.uniform(0.6, 1.0, 20)), list(_unit(rng, 20, np.eye(4)[0])), "validation")
    _feed(m, rng.uniform(0.6, 1.0, 5), _unit(rng, 5, np.eye(4)[0]))
    drift = m.summary()["drift"]
    assert drift["reference"] == {"source": "validation", "itm_scores": 20, "image_embeddings": 20, "complete": True}
    assert drift["itm_score"] is not None and drift["image_embedding"]["value"] < 0.05
    with pytest.raises(ValueError, match="neither"):
        m.set_reference([], [], "nothing")
