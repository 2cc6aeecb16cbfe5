"""The loop end to end on a tiny preset: every arm evaluated, every step's directory kept and
marked, the table written; a run killed mid-training and between a step's work and its marker,
then rerun, ends with the same table as an uninterrupted run; settings are checked on a rerun."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from openblip.reproduce import reproduce
from openblip.reproduce.arms import ALL_ARMS, Arm
from openblip.reproduce.run import check_out
from openblip.reproduce.steps import DONE
from openblip.train import loop

from .conftest import TINY


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("reproduce") / "run"
    with pytest.MonkeyPatch.context():
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            result = reproduce(TINY, out)
        finally:
            torch.set_num_threads(threads)
    assert result.exit_code == 0 and result.table is not None
    return out, result.table


def _numbers(table: dict[str, Any]) -> list[Any]:
    return [(row["arm"], {k: v["values"] for k, v in row.items() if isinstance(v, dict)}) for row in table["arms"]]


def test_every_arm_is_trained_evaluated_and_tabled(uninterrupted: tuple[Path, dict[str, Any]]) -> None:
    out, table = uninterrupted
    assert [r["arm"] for r in table["arms"]] == [a.value for a in ALL_ARMS]
    seed = out / "seed-0"
    for arm in ALL_ARMS:
        for part in ("data", "run", "eval"):
            assert (seed / "arms" / arm.value / part / DONE).is_file(), (arm, part)
        assert (seed / "arms" / arm.value / "run" / "model" / "model.safetensors").is_file()
    for run in ("filter", "nucleus", "beam"):
        assert (seed / "bootstrap" / run / "stats.json").is_file()
        assert (seed / "bootstrap" / run / "report.html").is_file()
    assert (seed / "finetune" / "model" / "model.safetensors").is_file()
    on_disk = json.loads((out / "table.json").read_text())
    assert on_disk["seeds"] == [0] and (out / "table.md").read_text().count("\n| ") >= 5
    # the same budget for every arm: step 1's steps, whatever its number of pairs
    steps = {json.loads((seed / "arms" / a.value / "run" / DONE).read_text())["steps"] for a in ALL_ARMS}
    assert steps == {TINY.pretrain.steps}
    pairs = {r["arm"]: r["train_pairs"]["mean"] for r in table["arms"]}
    assert pairs["no_capfilt"] == TINY.data.train + TINY.data.web
    assert pairs["captioner_only"] == TINY.data.train + 2 * TINY.data.web  # every web text and caption
    f = {x["bootstrap"]: x for x in table["filter"]}
    assert set(f) == {"filter", "nucleus", "beam"}
    # the filter's verdicts on the web texts do not depend on the captioner
    assert f["filter"]["web_kept_share"]["values"] == f["nucleus"]["web_kept_share"]["values"]


def test_a_killed_run_resumes_to_the_same_table(
    uninterrupted: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    original = loop._checkpoint
    kills = {"train": 0, "marker": 0}

    def checkpoint_then_kill(run: Any, lr: float) -> None:
        original(run, lr)
        if run.run_dir.parent.name == Arm.CAPTIONER_FILTER.value and run.position.step == 2 and not kills["train"]:
            kills["train"] += 1
            raise KeyboardInterrupt  # killed mid-training, after a checkpoint

    monkeypatch.setattr(loop, "_checkpoint", checkpoint_then_kill)
    with pytest.raises(KeyboardInterrupt):
        reproduce(TINY, out)
    assert kills["train"] == 1
    assert not (out / "seed-0" / "arms" / "captioner_filter" / "run" / DONE).exists()

    from openblip.reproduce import steps

    mark = steps.mark_done

    def kill_before_marking(step_dir: Path, summary: dict[str, Any]) -> None:
        if step_dir.parent.name == Arm.CAPTIONER_FILTER_BEAM.value and step_dir.name == "eval" and not kills["marker"]:
            kills["marker"] += 1
            raise KeyboardInterrupt  # the evaluation finished, its marker never came
        mark(step_dir, summary)

    monkeypatch.setattr(steps, "mark_done", kill_before_marking)
    with pytest.raises(KeyboardInterrupt):
        reproduce(TINY, out)
    assert kills["marker"] == 1
    result = reproduce(TINY, out)
    assert result.exit_code == 0 and result.table is not None
    assert _numbers(result.table) == _numbers(uninterrupted[1])


def test_a_rerun_with_other_settings_is_refused(uninterrupted: tuple[Path, dict[str, Any]]) -> None:
    out, _ = uninterrupted
    other = dataclasses.replace(TINY, web_noise=0.7)
    with pytest.raises(ValueError, match="web_noise"):
        check_out(out, other)
    check_out(out, dataclasses.replace(TINY, seeds=(0, 1)))  # more seeds: the same run, extended
