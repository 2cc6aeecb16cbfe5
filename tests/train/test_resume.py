"""Reproducible training (the documented guarantee: see train/loop.py), with 2 threads and no
switch: two uninterrupted runs of one config end with bitwise the same weights, momentum encoders,
queues and optimizer state, and so does a run SIGKILLed after a checkpoint and resumed, and a run
with `run.deterministic` on. Off a terminal, the run reports its progress on stderr, one line per
metrics record."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from openblip.train import checkpoint as ckpt

# tests/conftest.py's tiny config with a larger vision side and batch, plus what a resume must
# carry over: dropout and augmentation draw from the RNGs, the cosine schedule and the queue run
# on across the checkpoint.
RESUME = [
    "model.dropout=0.1",
    "data.augment=true",
    "data.min_scale=0.5",
    "data.random_reference=true",
    "optim.lr=1e-3",
    "schedule.epochs=12",
    "schedule.warmup_steps=2",
    "schedule.decay=cosine",
    "schedule.per_epoch=false",
    "run.seed=5",
    "run.ckpt_every=6",
    "run.keep_last=10",
    "run.progress=true",  # the progress lines are checked
    # Tensors big enough for torch and MKL to split their work among threads: with ITM's hard
    # negatives taken by plain indexing (racing atomic adds in its backward), two 2-thread runs of
    # this config differed, so the test can fail.
    "model.image_size=96",
    "model.vision.width=128",
    "model.vision.heads=4",
    "model.vision.mlp_dim=256",
    "data.batch_size=16",  # one step an epoch, 12 in all
    "objective.queue_size=32",
]


def _cmd(config: Path, train: Path, out: Path, resume: bool, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "openblip", "train", str(config), "--set", f"data.train={train}"]
    for item in [*RESUME, *extra, f"run.out_dir={out}"]:
        cmd += ["--set", item]
    return cmd + (["--resume"] if resume else [])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "2"  # more than one: bitwise at the default thread count, not only at 1
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # no busy-waiting threads on a shared, loaded machine
    return env


def _train(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    # a generous limit: a loaded CI machine may be many times slower than a quiet one
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _final(out: Path) -> dict[str, object]:
    latest = ckpt.latest_checkpoint(out)
    assert latest is not None and latest.name == "step-00000012.pt"
    return ckpt.load_checkpoint(latest)


def _assert_same(a: object, b: object, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_two_2_thread_runs_a_killed_and_resumed_run_and_a_guarded_run_end_bitwise_equal(
    tiny_train_config: Path, tiny_scenes: Path, tmp_path: Path
) -> None:
    config = tiny_train_config
    train = tiny_scenes / "train"  # 16 images / batch 16: 1 step an epoch, 12 in all

    straight = tmp_path / "straight"
    done = _train(_cmd(config, train, straight, False))
    # stderr is a pipe, not a terminal: a progress line per metrics record (log_every = 1)
    lines = [line for line in done.stderr.splitlines() if line.startswith("step ")]
    assert len(lines) == 12, done.stderr[-3000:]
    assert re.fullmatch(r"step 1/12 \(8%\) loss \d+\.\d{3} images/s \d+\.\d ETA \d+(m\d\ds|s)", lines[0]), lines[0]
    assert lines[-1].startswith("step 12/12 (100%)") and lines[-1].endswith("ETA 0s")
    again = tmp_path / "again"
    _train(_cmd(config, train, again, False))

    broken = tmp_path / "broken"
    proc = subprocess.Popen(_cmd(config, train, broken, False), env=_env(), stderr=subprocess.DEVNULL)
    half = broken / "checkpoints" / "step-00000006.pt"
    deadline = time.time() + 3600
    while not half.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert half.exists()
    # If the run got further before the kill landed, forget that progress: resume from step 6.
    for later in ckpt.list_checkpoints(broken):
        if later != half:
            later.unlink()
    shutil.rmtree(broken / "model", ignore_errors=True)
    _train(_cmd(config, train, broken, True))

    # the guard (torch's deterministic algorithms) changes no result
    guarded = tmp_path / "guarded"
    _train(_cmd(config, train, guarded, False, "run.deterministic=true"))

    a, b, c, d = _final(straight), _final(again), _final(broken), _final(guarded)
    for key in ("model", "objective", "optimizer", "position", "scheduler"):
        _assert_same(a[key], b[key], f"second run: {key}")
        _assert_same(a[key], c[key], f"resumed run: {key}")
        _assert_same(a[key], d[key], f"run.deterministic run: {key}")
    # the run actually trained: the weights moved away from the step-6 checkpoint
    mid = ckpt.load_checkpoint(half)
    assert not torch.equal(mid["model"]["itm_head.weight"], a["model"]["itm_head.weight"])  # type: ignore[index]
