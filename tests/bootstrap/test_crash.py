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


def test_killed_ray_run_and_rerun_is_an_uninterrupted_run(
    cli: Callable[..., Result], models: dict[str, str], web_dir: Path, tmp_path: Path
) -> None:
    """The same with --engine ray: the driver killed while publishing its second shard (the first
    is done, the second's scores are in place and its kept shard is not), then rerun on Ray, ends
    with the rows, kept pairs and stats of an uninterrupted (local) run."""
    pytest.importorskip("ray", reason="Ray is the optional extra openblip[ray]")
    from .test_pipeline import assert_same_rows, members

    def args(out: Path, *engine: str) -> list[str]:
        m = models["full"]
        common = ["--device", "cpu", "--workers", "0", "--batch-size", "3"]
        return [str(web_dir), "--out", str(out), "--captioner", m, "--filter", m, *common, *engine]

    ray = ("--engine", "ray", "--ray-num-cpus", "2")
    ref = cli(*args(tmp_path / "ref"))
    assert ref.code == 0, ref.stderr
    out = tmp_path / "ray"
    killed = cli(*args(out, *ray), env={ENV: "between-renames:2"})
    assert killed.code == -signal.SIGKILL, (killed.code, killed.stderr[-2000:])
    assert len(list((out / "done").glob("*.json"))) == 1 and len(list((out / "scores").glob("*.parquet"))) == 2
    final = cli(*args(out, *ray))
    assert final.code == 0, final.stderr[-2000:]
    got, want = snapshot(out), snapshot(tmp_path / "ref")
    assert got["files"] == want["files"]  # nothing left over, nothing missing
    rows = [r for name in sorted(got["rows"]) for r in got["rows"][name]]
    assert_same_rows(rows, [r for name in sorted(want["rows"]) for r in want["rows"][name]])
    for stats in (got["stats"], want["stats"]):
        stats.pop("histograms")  # a score within float rounding of a bin edge may move
    assert got["stats"] == want["stats"]
    assert {k: [n for n, _ in v] for k, v in members(out).items()} == {
        k: [n for n, _ in v] for k, v in members(tmp_path / "ref").items()
    }
