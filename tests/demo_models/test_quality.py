"""The shipped models' quality on a small fresh split (seed 9001: neither the training seed 100
nor the README's 9000), with thresholds a little below the README's figures; and the filter
arithmetic on hand-made scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from openblip.demo_models.quality import FilterScore, filter_metrics, fresh_split, measure_quality

# The README's figures (seed 9000, 100 test images, 500 web texts) are chance level: the shipped
# models are undertrained (70 steps each; README "Shipped demo models"). The filter's ITM gives
# every text the same probability (~0.35), so it flags every web text: recall 1.0, precision =
# the noise rate 0.4; the VQA model answers yes/no (50% on `exists`, 14% overall). THRESHOLDS sit
# a little below those figures; AIMS are the issue's targets, which these models do not reach
# (test_the_issue_aims is a strict xfail: a better model makes it pass and the marker must go).
THRESHOLDS = {"filter_precision": 0.3, "filter_recall": 0.9, "vqa": 8.0, "vqa_exists": 35.0}
AIMS = {"caption_f1": 0.8, "r1": 50.0, "filter_precision": 0.9, "filter_recall": 0.9}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Tiny models: one thread is fastest and leaves the other core to the rest of the suite."""


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = fresh_split(tmp_path_factory.mktemp("fresh") / "synth", seed=9001, test_images=40, web_texts=200)
    return measure_quality(data, test_images=40)


def test_figures_are_complete(figures: dict) -> None:
    assert figures["images"] == 40
    for key in ("txt_r1", "txt_r5", "img_r1", "img_r5"):
        assert 0.0 <= figures["retrieval_listing"][key] <= 100.0
    assert set(figures["caption"]) == {"CIDEr", "BLEU-4", "attribute_f1", "shuffled_f1"}
    assert len(figures["examples"]) == 5 and all(e["caption"] for e in figures["examples"])


def test_filter_finds_the_noisy_web_texts(figures: dict) -> None:
    f = figures["filter"]
    assert f["texts"] == 200 and f["noisy"] == 80
    assert f["precision"] >= THRESHOLDS["filter_precision"]
    assert f["recall"] >= THRESHOLDS["filter_recall"]
    assert set(f["per_type"]) == {"other_image", "attribute_swap", "generic", "truncated"}


def test_vqa_answers(figures: dict) -> None:
    v = figures["vqa"]
    assert v["questions"] > 200
    assert v["accuracy"] >= THRESHOLDS["vqa"]
    assert v["per_type"]["exists"] >= THRESHOLDS["vqa_exists"]
    assert set(v["per_type"]) >= {"colour", "count", "exists", "shape"}


@pytest.mark.xfail(strict=True, reason="the shipped models are undertrained (README: Shipped demo models)")
def test_the_issue_aims(figures: dict) -> None:
    r = figures["retrieval_listing"]
    assert figures["caption"]["attribute_f1"] >= AIMS["caption_f1"]
    assert min(r["txt_r1"], r["img_r1"]) >= AIMS["r1"]
    assert figures["filter"]["precision"] >= AIMS["filter_precision"]
    assert figures["filter"]["recall"] >= AIMS["filter_recall"]


def test_fresh_split_is_reused(tmp_path: Path) -> None:
    a = fresh_split(tmp_path / "s", seed=9002, test_images=3, web_texts=4)
    stamp = (a / "manifest.json").stat().st_mtime_ns
    assert fresh_split(tmp_path / "s", seed=9002, test_images=3, web_texts=4) == a
    assert (a / "manifest.json").stat().st_mtime_ns == stamp


def test_filter_metrics_arithmetic() -> None:
    scores = [
        FilterScore("a", "clean", 0.9),
        FilterScore("b", "clean", 0.2),  # wrongly flagged
        FilterScore("c", "generic", 0.1),
        FilterScore("d", "truncated", 0.7),  # missed
        FilterScore("e", "truncated", 0.3),
    ]
    m = filter_metrics(scores, threshold=0.5)
    assert (m["noisy"], m["flagged"]) == (3, 3)
    assert m["precision"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["recall"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["clean_flagged"] == pytest.approx(0.5, abs=1e-12)
    assert m["per_type"]["truncated"] == {"texts": 2.0, "recall": 0.5}
    assert "other_image" not in m["per_type"]
