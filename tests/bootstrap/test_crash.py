"""A run killed with SIGKILL at any moment and rerun ends as if never killed: same rows, same
kept shards (byte for byte), same stats (timings aside). Kills at named points
(OPENBLIP_BOOTSTRAP_KILL_AT, bootstrap/faults.py), one after another on the same directory, then a
kill from outside at a random time."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from openblip.bootstrap.faults import ENV

from .conftest import Result

pytestmark = pytest.mark.slow


def snapshot(out: Path) -> dict[str, Any]:
    stats = json.loads((out / "stats.json").read_text())
    stats.pop("throughput")
    return {
        "rows": {p.name: pq.read_table(p).to_pylist() for p in sorted((out / "scores").glob("*.parquet"))},
        "shards": {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))},
        "stats": stats,
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "report.html"),
    }


def test_killed_anywhere_and_rerun_is_an_uninterrupted_run(
    cli: Callable[..., Result], models: dict[str, str], web_dir: Path, tmp_path: Path
) -> None:
    def args(out: Path) -> list[str]:
        m = models["full"]
        return [str(web_dir), "--out", str(out), "--captioner", m, "--filter", m, "--device", "cpu"]

    common = ["--workers", "0", "--batch-size", "3"]
    ref = cli(*args(tmp_path / "ref"), *common)
    assert ref.code == 0, ref.stderr
    expected = snapshot(tmp_path / "ref")
    assert len(expected["rows"]) == 3

    out = tmp_path / "killed"
    for point in ("mid-shard:2", "between-renames:1", "after-shard:1", "before-commit:1", "stats-write:1"):
        killed = cli(*args(out), *common, env={ENV: point})
        assert killed.code == -signal.SIGKILL, (point, killed.code, killed.stderr)
    final = cli(*args(out), *common)
    assert final.code == 0, final.stderr
    assert snapshot(out) == expected

    # a kill from outside at a random moment (model loading, mid-shard, writing, ...); the seed is printed
    seed = random.randrange(10**6)
    delay = random.Random(seed).uniform(1.0, 15.0)
    out = tmp_path / "random"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "openblip", "bootstrap", *args(out), *common], env=env)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    final = cli(*args(out), *common, "--workers", "1")  # another worker count, the same outputs
    assert final.code == 0, (seed, final.stderr)
    assert snapshot(out) == expected, f"random kill after {delay:.2f} s (seed {seed})"
