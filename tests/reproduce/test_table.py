"""The table: mean and spread over seeds, one row per arm, the filter's figures, both files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from openblip.reproduce.arms import Arm, BootstrapRun
from openblip.reproduce.table import build_table, summarize, table_markdown, write_table


def test_summarize_mean_and_sample_spread() -> None:
    s = summarize([1.0, 2.0, 6.0])
    assert s["mean"] == pytest.approx(3.0, abs=1e-12)
    # sample standard deviation: sqrt(((1-3)^2 + (2-3)^2 + (6-3)^2) / 2) = sqrt(7)
    assert s["spread"] == pytest.approx(math.sqrt(7.0), abs=1e-12)
    assert (s["min"], s["max"], s["n"]) == (1.0, 6.0, 3)
    assert s["values"] == [1.0, 2.0, 6.0]


def test_summarize_one_seed_has_no_spread_and_missing_values_are_left_out() -> None:
    assert summarize([4.5])["spread"] == 0.0
    s = summarize([None, 2.0, 4.0])
    assert (s["mean"], s["n"]) == (3.0, 2)
    assert summarize([None])["mean"] is None


def _eval(r1: float) -> dict[str, float]:
    return {
        "txt_r1": r1,
        "txt_r5": r1 + 10,
        "img_r1": r1 + 2,
        "img_r5": r1 + 12,
        "r1_mean": r1 + 1,
        "cider": 0.5,
        "attribute_f1": 0.25,
        "chance_r1": 1.0,
    }


def _table() -> dict:
    arms = (Arm.NO_CAPFILT, Arm.CAPTIONER_FILTER)
    evals = {
        0: {Arm.NO_CAPFILT: _eval(10), Arm.CAPTIONER_FILTER: _eval(20)},
        1: {Arm.NO_CAPFILT: _eval(14), Arm.CAPTIONER_FILTER: _eval(30)},
    }
    pairs = {
        s: {
            Arm.NO_CAPFILT: {"clean": 5, "web": 8, "pairs": 13},
            Arm.CAPTIONER_FILTER: {"clean": 5, "web": 3, "synthetic": 6, "pairs": 14},
        }
        for s in (0, 1)
    }
    boot = {
        s: {
            BootstrapRun.NUCLEUS: {
                "filter_precision": 0.8,
                "filter_recall": 0.5 + s / 10,
                "web_kept_share": 0.4,
                "replaced_share": 0.3,
                "dropped_share_by_noise": {"clean": 0.1, "generic": 0.9},
            }
        }
        for s in (0, 1)
    }
    return build_table({"name": "tiny"}, [0, 1], arms, evals, pairs, boot)


def test_build_table_rows_per_arm_over_seeds() -> None:
    table = _table()
    assert [r["arm"] for r in table["arms"]] == ["no_capfilt", "captioner_filter"]
    capfilt = table["arms"][1]
    assert capfilt["txt_r1"]["mean"] == pytest.approx(25.0, abs=1e-12)
    assert capfilt["txt_r1"]["values"] == [20, 30]
    assert capfilt["train_synthetic"]["mean"] == 6.0
    assert table["arms"][0]["train_synthetic"]["mean"] == 0.0  # no synthetic pairs: counted as 0
    f = table["filter"][0]
    assert f["bootstrap"] == "nucleus"
    assert f["filter_recall"]["mean"] == pytest.approx(0.55, abs=1e-12)
    assert f["dropped_share_by_noise"]["generic"]["mean"] == pytest.approx(0.9, abs=1e-12)
    assert table["chance_r1"] == 1.0


def test_markdown_has_a_row_per_arm_with_mean_and_spread(tmp_path: Path) -> None:
    md = table_markdown(_table())
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| no CapFilt | 12.0 ± 2.8 |")  # txt_r1 10 and 14: sd 2.83
    assert rows[2].startswith("| captioner + filter | 25.0 ± 7.1 |")
    assert any(r.startswith("| nucleus | 80.0 ± 0.0 | 55.0 ± 7.1 |") for r in rows)
    json_path, md_path = write_table(tmp_path, _table())
    assert json.loads(json_path.read_text())["seeds"] == [0, 1]
    assert md_path.read_text() == md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json", "table.md"]  # no temporaries left
