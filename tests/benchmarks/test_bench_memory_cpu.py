"""benchmarks/bench_memory_cpu.py, run on a tiny model: each side measured in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_memory_cpu.py"


@pytest.mark.skipif(not SCRIPT.exists() or not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_memory_benchmark_reports_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "mem.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--bs", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| openblip |" in proc.stdout and "| transformers |" in proc.stdout
    res = json.loads(out.read_text())
    for side in ("transformers", "openblip"):
        r = res[side]
        assert 0 < r["loaded_mib"] <= r["peak_mib"]
        assert r["added_mib"] == pytest.approx(r["peak_mib"] - r["loaded_mib"])
    assert res["peak_ratio"] == pytest.approx(res["openblip"]["peak_mib"] / res["transformers"]["peak_mib"])
