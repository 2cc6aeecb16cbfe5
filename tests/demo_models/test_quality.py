"""The shipped models' quality on a small fresh split (seed 9001: neither the training seed 100
nor the README's 9000), with thresholds a little below the README's figures; and the filter
arithmetic on hand-made scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from openblip.demo_models.quality import FilterScore, filter_metrics, fresh_split, measure_quality

# On this split (seed 9001, 40 test images, 200 web texts) the shipped models gave, 2026-12-03:
# retrieval R@1 90% / 90% (listing captions), caption attribute F1 0.34 and CIDEr-D 2.11, filter
# precision 0.59 and recall 0.88 (chance precision: the noise rate 0.4), VQA 58% (exists 91%,
# colour 75%, size 79%, count 53%, shape 26%). THRESHOLDS sit a little below those; AIMS are the
# issue's targets: retrieval reaches its aim, caption F1 and filter precision do not
# (test_the_issue_aims_not_reached is a strict xfail: a better model makes it pass and the marker
# must go; README "Shipped demo models" says why they fall short).
THRESHOLDS = {
    "r1": 75.0,
    "caption_f1": 0.25,
    "cider": 1.5,
    "filter_precision": 0.5,
    "filter_recall": 0.75,
    "vqa": 45.0,
    "vqa_exists": 75.0,
    "vqa_colour": 60.0,
}
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


def test_retrieval_meets_the_aim(figures: dict) -> None:
    r = figures["retrieval_listing"]
    assert min(r["txt_r1"], r["img_r1"]) >= THRESHOLDS["r1"] >= AIMS["r1"]


def test_captions_name_the_scene(figures: dict) -> None:
    c = figures["caption"]
    assert c["attribute_f1"] >= THRESHOLDS["caption_f1"] > 3 * c["shuffled_f1"]  # well above a blind captioner
    assert c["CIDEr"] >= THRESHOLDS["cider"]


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
    assert v["per_type"]["colour"] >= THRESHOLDS["vqa_colour"]
    assert set(v["per_type"]) >= {"colour", "count", "exists", "shape"}


@pytest.mark.xfail(strict=True, reason="caption F1 and filter precision fall short (README: Shipped demo models)")
def test_the_issue_aims_not_reached(figures: dict) -> None:
    assert figures["caption"]["attribute_f1"] >= AIMS["caption_f1"]
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
