"""Two gloo processes under torchrun give the losses and gradients of one process with the global
batch: ITC columns, queue updates and ITM hard negatives are computed over the global batch
(negatives drawn with a generator shared by the ranks), and the gathered image tokens pass their
gradients back to the rank that owns them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("dist_worker.py")


def _run(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("kind", ["pretrain", "retrieval"])
def test_two_processes_equal_one_process(kind: str, tmp_path: Path) -> None:
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run([sys.executable, str(WORKER), kind, str(one)])
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",
            str(WORKER),
            kind,
            str(two),
        ]
    )
    a = torch.load(one, weights_only=True)
    b = torch.load(two, weights_only=True)
    assert torch.allclose(a["losses"], b["losses"], rtol=1e-5, atol=1e-6), (a["losses"], b["losses"])
    assert a["grads"].keys() == b["grads"].keys()
    for name, g in a["grads"].items():
        assert torch.allclose(g, b["grads"][name], rtol=1e-4, atol=1e-6), name
    # the gathered ITM image tokens carry gradient back into the vision tower
    assert float(a["grads"]["visual_encoder.patch_embed.proj.weight"].abs().sum()) > 0
    for name, p in a["params"].items():
        assert torch.allclose(p, b["params"][name], rtol=1e-4, atol=1e-5), name
    assert torch.allclose(a["queue"], b["queue"], atol=1e-5)
