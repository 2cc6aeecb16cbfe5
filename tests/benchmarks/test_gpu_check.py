"""The one-call GPU script and the benchmarks it runs, dry-run on the CPU with a tiny model.

The GPU machine has torch, transformers and triton but not PIL, pyarrow or faiss, and a GPU
session is rare and short: a script that breaks there wastes it. So this runs the very script,
with those libraries made unimportable, and checks what it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKER = """
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"PIL", "pyarrow", "faiss", "pycocoevalcap"}:
            raise ImportError(f"{name} is not installed on the GPU machine")
sys.meta_path.insert(0, _Absent())
"""


@pytest.mark.skipif(not (ROOT / "benchmarks" / "gpu_check.sh").exists(), reason="benchmarks/ not in this tree")
def test_gpu_check_dry_run_without_pil_or_pyarrow(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = dict(os.environ)
    env.update(
        GPU_CHECK_DRY="1",
        OUT=str(out),
        PYTHON=sys.executable,
        PYTHONPATH=str(site),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check = json.loads((out / "check_fp32.json").read_text())
    assert check["check_greedy_ids_equal"] is True and check["check_beam3_ids_equal"] is True
    assert check["cuda_graph"] is True
    assert check["check_vision_max_abs_diff"] < 1e-4
    assert check["check_itm_max_abs_diff"] < 1e-4
    bench = json.loads((out / "bench_bs2.json").read_text())
    for name in ("vision", "caption_beam1", "caption_beam3", "caption_nucleus", "itm", "itc", "vqa_gen5"):
        assert bench[f"{name}_ours"] > 0 and bench[f"{name}_hf"] > 0, name
    step = json.loads((out / "train_step.json").read_text().strip().splitlines()[-1])
    assert step["step_s"] > 0 and step["model_tflop_per_step"] > 0
    assert "../" not in (ROOT / "benchmarks" / "gpu_check.sh").read_text()  # needs nothing outside the repo
