"""Resumable steps: DONE.json only after the work returns; a finished step is skipped, an
interrupted one is run again."""

from __future__ import annotations

from pathlib import Path

import pytest

from openblip.reproduce.steps import DONE, is_done, mark_done, read_done, run_step


def test_a_finished_step_is_skipped_and_returns_its_summary(tmp_path: Path) -> None:
    calls: list[Path] = []
    said: list[str] = []

    def work(d: Path) -> dict:
        calls.append(d)
        (d / "out.txt").write_text("x")
        return {"value": 3}

    step = tmp_path / "s"
    assert run_step(step, "thing", work, said.append) == {"value": 3}
    assert is_done(step) and read_done(step) == {"value": 3}
    assert run_step(step, "thing", work, said.append) == {"value": 3}
    assert calls == [step]  # the second run did not work again
    assert said == ["thing ...", "thing: done before, skipped"]


def test_a_killed_step_has_no_marker_and_is_redone(tmp_path: Path) -> None:
    step = tmp_path / "s"

    def killed(d: Path) -> dict:
        (d / "partial.txt").write_text("half")
        raise KeyboardInterrupt  # as a kill mid-work: the exception leaves before any marker

    with pytest.raises(KeyboardInterrupt):
        run_step(step, "thing", killed, lambda m: None)
    assert not is_done(step) and (step / "partial.txt").exists()

    seen: list[bool] = []

    def resumed(d: Path) -> dict:
        seen.append((d / "partial.txt").exists())  # the work finds its leftovers
        return {"ok": True}

    assert run_step(step, "thing", resumed, lambda m: None) == {"ok": True}
    assert seen == [True] and is_done(step)


def test_mark_done_leaves_no_temporary(tmp_path: Path) -> None:
    mark_done(tmp_path / "s", {"a": 1})
    assert [p.name for p in (tmp_path / "s").iterdir()] == [DONE]
