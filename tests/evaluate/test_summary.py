"""Metric documentation, rounding for the JSON, and the human summary lines."""

from __future__ import annotations

import pytest

from openblip.evaluate.summary import (
    METRICS,
    caption_summary,
    metric,
    metrics_help,
    retrieval_summary,
    rounded,
    vqa_summary,
    where_lines,
)

RETRIEVAL_NAMES = [
    *(f"{d}_r{k}" for d in ("txt", "img") for k in (1, 5, 10)),
    *(f"itc_{d}_r{k}" for d in ("txt", "img") for k in (1, 5, 10)),
    "txt_r_mean", "img_r_mean", "r_mean", "images", "texts", "chance_r1",
]  # fmt: skip
CAPTION_NAMES = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "attribute_precision",
                 "attribute_recall", "attribute_f1", "shuffled_f1"]  # fmt: skip


@pytest.mark.parametrize("name", [*RETRIEVAL_NAMES, *CAPTION_NAMES, "vqa_accuracy", "exact_match", "questions"])
def test_every_metric_the_evaluation_writes_is_documented(name: str) -> None:
    m = metric(name)
    assert m.unit in ("%", "fraction", "count") and m.meaning
    assert m.name in metrics_help()


def test_names_are_documented_once() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))


def test_rounded_counts_are_integers_and_scores_lose_float_noise() -> None:
    got = rounded({"txt_r1": 18.599999999999998, "images": 4.0, "CIDEr": 1.23456789, "new_metric": 0.1 + 0.2})
    assert got == {"txt_r1": 18.6, "images": 4, "CIDEr": 1.2346, "new_metric": 0.3}
    assert isinstance(got["images"], int) and repr(got["txt_r1"]) == "18.6"


def test_summaries_round_and_name_the_baseline() -> None:
    m = {f"{d}_r{k}": 100 / 3 for d in ("txt", "img") for k in (1, 5, 10)}
    m |= {"itc_txt_r1": 12.5, "itc_img_r1": 10.0, "r_mean": 100 / 3, "images": 8.0, "texts": 40.0, "chance_r1": 12.5}
    lines = retrieval_summary(m, refs_per_image=5.0)
    assert lines[0] == "retrieval on 8 images and 40 captions"
    assert lines[1] == "  image -> text: R@1 33.3%  R@5 33.3%  R@10 33.3%   (ITC alone, before re-ranking: R@1 12.5%)"
    assert "chance R@1: 12.5% image -> text, 12.5% text -> image" in lines[3]
    c = {"BLEU-4": 0.123456, "ROUGE-L": 0.5, "CIDEr": 1.0, "attribute_f1": 0.6, "attribute_precision": 0.7,
         "attribute_recall": 0.5, "shuffled_f1": 0.2}  # fmt: skip
    lines = caption_summary(c, 4, 20, "greedy")
    assert lines[1].startswith("  BLEU-4 0.123  ROUGE-L 0.500  CIDEr 1.000")
    assert "captions of the wrong image: F1 0.200" in lines[2]
    v = vqa_summary({"questions": 9.0, "vqa_accuracy": 50.0, "exact_match": 44.44444}, 3, ("yes", 33.33333))
    assert v == [
        "VQA on 9 questions about 3 images",
        "  VQA accuracy 50.0%  exact match 44.4%",
        "  baseline, always answering the commonest answer 'yes': VQA accuracy 33.3%",
    ]
    assert where_lines("e.json", "r.html")[:2] == ["  results: e.json", "  report: r.html"]
