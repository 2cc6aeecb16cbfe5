"""The demo's summary, built from bootstrap outputs written here by hand (stats.json's and the
scores files' layout of `openblip bootstrap`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openblip.demo_models.summary import read_examples, summary_text


def _row(key: str, noise: str, web: str, web_itm: float, synth: list[tuple[str, float]], error: Any = None) -> dict:
    return {
        "key": key,
        "shard": "00000",
        "web_text": web,
        "web_itm": web_itm,
        "web_itc": 0.1,
        "web_kept": web_itm > 0.5,
        "synthetic_texts": [t for t, _ in synth],
        "synthetic_itm": [p for _, p in synth],
        "synthetic_itc": [0.2 for _ in synth],
        "synthetic_kept": [p > 0.5 for _, p in synth],
        "error": error,
        "meta": json.dumps({"noise": noise}),
    }


def _bootstrap_dir(tmp_path: Path) -> Path:
    boot = tmp_path / "bootstrap"
    (boot / "scores").mkdir(parents=True)
    rows = [
        _row("000000000", "clean", "a red circle", 0.9, [("a red circle", 0.8)]),
        _row("000000001", "generic", "IMG_0412.jpg", 0.1, [("a blue square", 0.7)]),
        _row("000000002", "truncated", "a large", 0.6, [("a large green star", 0.4)]),
        _row("000000003", "other_image", "two white crosses", 0.2, [("a small cross", 0.9)]),
        _row("000000004", "clean", "", 0.0, [], error="undecodable image"),
    ]
    pq.write_table(pa.Table.from_pylist(rows), boot / "scores" / "00000.parquet")
    return boot


STATS = {
    "samples": 5,
    "threshold": 0.5,
    "web": {"kept": 2, "dropped": 2},
    "synthetic": {"kept": 3, "dropped": 1},
    "kept_pairs": 5,
    "errors": {"total": 1, "by_reason": {"undecodable image": 1}},
    "noise": {
        "precision": 1.0,
        "recall": 2 / 3,
        "noisy": 3,
        "clean": 1,
        "by_type": {
            "clean": {"count": 1, "dropped": 0, "dropped_share": 0.0},
            "generic": {"count": 1, "dropped": 1, "dropped_share": 1.0},
            "other_image": {"count": 1, "dropped": 1, "dropped_share": 1.0},
            "truncated": {"count": 1, "dropped": 0, "dropped_share": 0.0},
        },
    },
}


def test_examples_put_replaced_noisy_texts_first_and_skip_errors(tmp_path: Path) -> None:
    examples = read_examples(_bootstrap_dir(tmp_path), n=3)
    assert [e.key for e in examples] == ["000000001", "000000003", "000000000"]
    assert examples[0].synthetic == (("a blue square", 0.7, True),)
    assert all(e.key != "000000004" for e in read_examples(tmp_path / "bootstrap", n=10))


def test_summary_states_counts_precision_recall_examples_and_files(tmp_path: Path) -> None:
    boot = _bootstrap_dir(tmp_path)
    text = summary_text(tmp_path, boot, 2024, STATS)
    assert "CapFilt on 5 web images" in text
    assert "web texts kept 2, dropped 2; synthetic captions kept 3, dropped 1" in text
    assert "precision 100% and recall 67%" in text
    assert "cut mid-sentence" in text and "0 of 1" in text
    assert "1 samples could not be used" in text
    assert "'IMG_0412.jpg'  ITM 0.10 -> dropped" in text
    assert "captioner wrote: 'a blue square'  ITM 0.70 -> kept" in text
    assert str(boot / "report.html") in text
    assert "openblip caption --model synthetic-caption" in text


def test_summary_without_noise_labels_leaves_the_precision_out(tmp_path: Path) -> None:
    boot = _bootstrap_dir(tmp_path)
    stats = {**STATS, "noise": None, "errors": {"total": 0, "by_reason": {}}}
    text = summary_text(tmp_path, boot, 2024, stats)
    assert "precision" not in text and "could not be used" not in text
