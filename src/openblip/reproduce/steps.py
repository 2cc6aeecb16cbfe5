"""Resumable steps: a step's directory gets DONE.json only once its outputs are complete.

A rerun skips every step whose DONE.json exists (and returns the summary stored in it); a step
without one is run again, and each kind of work knows how to continue or redo itself in its
directory: training resumes from its last checkpoint, bootstrap skips its finished shards, the
benchmark writer and the arm data writer redo an interrupted write, an evaluation runs again. A
run killed at any moment therefore ends, when rerun, as if it had never been killed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DONE = "DONE.json"

Say = Callable[[str], None]  # progress in words (the CLI prints it on stderr)


def is_done(step_dir: Path) -> bool:
    return (step_dir / DONE).is_file()


def read_done(step_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((step_dir / DONE).read_text(encoding="utf-8"))
    return result


def mark_done(step_dir: Path, summary: dict[str, Any]) -> None:
    """Write DONE.json atomically (temporary name, fsync, rename): it exists whole or not at all."""
    step_dir.mkdir(parents=True, exist_ok=True)
    tmp = step_dir / f".{DONE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, step_dir / DONE)


def run_step(step_dir: Path, name: str, work: Callable[[Path], dict[str, Any]], say: Say) -> dict[str, Any]:
    """`work(step_dir)` unless the step finished before; its summary either way. `work` must leave
    its outputs complete when it returns (and may find a killed attempt's leftovers in step_dir)."""
    if is_done(step_dir):
        say(f"{name}: done before, skipped")
        return read_done(step_dir)
    say(f"{name} ...")
    step_dir.mkdir(parents=True, exist_ok=True)
    summary = work(step_dir)
    mark_done(step_dir, summary)
    return summary
