"""The training loop's run-directory rules, in process on a tiny model: a fresh run never mixes
with another run's checkpoints, a resume refuses a changed config, metrics.jsonl holds each
completed step once, and bad intervals are refused before any training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from openblip.train import checkpoint as ckpt
from openblip.train.config import TrainConfig, load_config
from openblip.train.loop import METRICS_FILE, train

# tests/conftest.py's tiny config, with room for 2 steps an epoch (16 images) and a checkpoint each
TINY = [
    "data.batch_size=8",
    "data.max_length=12",
    "schedule.epochs=2",
    "run.ckpt_every=1",
    "run.keep_last=2",
]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Tiny models: one torch thread (tests/conftest.py)."""


@pytest.fixture
def cfg(tiny_train_config: Path, tiny_scenes: Path) -> Callable[..., TrainConfig]:
    """cfg(out_dir, "key=value", ...): the tiny config training on tiny_scenes into out_dir."""

    def make(out: Path, *extra: str) -> TrainConfig:
        sets = [*TINY, f"data.train={tiny_scenes / 'train'}", f"run.out_dir={out}", *extra]
        return load_config(tiny_train_config, sets)

    return make


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / METRICS_FILE).read_text().splitlines()]


@pytest.mark.parametrize("key", ["run.log_every", "run.ckpt_every"])
def test_intervals_below_one_are_refused(cfg: Callable[..., TrainConfig], tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        train(cfg(tmp_path / "run", f"{key}=0"))
    assert not (tmp_path / "run").exists()


def test_fresh_run_refuses_a_directory_with_checkpoints(cfg: Callable[..., TrainConfig], tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(cfg(out, "schedule.max_steps=2"))
    before = [p.name for p in ckpt.list_checkpoints(out)]
    with pytest.raises(ValueError, match=r"step-00000002\.pt.*resume"):
        train(cfg(out, "schedule.max_steps=2"))
    assert [p.name for p in ckpt.list_checkpoints(out)] == before
    assert _steps(out) == [1, 2]


def test_resume_refuses_a_changed_config_naming_the_keys(cfg: Callable[..., TrainConfig], tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(cfg(out, "schedule.max_steps=1"))
    with pytest.raises(ValueError, match=r"optim\.lr.*data\.batch_size|data\.batch_size.*optim\.lr"):
        train(cfg(out, "schedule.max_steps=1", "optim.lr=0.5", "data.batch_size=4"), resume=True)
    # how often to log or checkpoint, and how many to keep, may change
    done = train(cfg(out, "schedule.max_steps=1", "run.log_every=5", "run.keep_last=1"), resume=True)
    assert done.steps == 1


def test_resume_drops_metrics_of_steps_after_the_checkpoint(cfg: Callable[..., TrainConfig], tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(cfg(out, "run.ckpt_every=2", "run.keep_last=0"))
    assert _steps(out) == [1, 2, 3, 4]
    # as if killed after logging step 3, before its checkpoint, mid-way through a line
    ckpt.checkpoint_dir(out).joinpath("step-00000004.pt").unlink()
    with (out / METRICS_FILE).open("a") as f:
        f.write('{"step": 4, "lo')
    train(cfg(out, "run.ckpt_every=2", "run.keep_last=0"), resume=True)
    assert _steps(out) == [1, 2, 3, 4]


def test_fresh_run_starts_a_new_metrics_file(cfg: Callable[..., TrainConfig], tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # a run killed before its first checkpoint left these
    (out / METRICS_FILE).write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 8.0}\n')
    train(cfg(out, "schedule.max_steps=1"))
    assert _steps(out) == [1]


def test_resume_passes_over_a_damaged_latest_checkpoint(cfg: Callable[..., TrainConfig], tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(cfg(out, "run.keep_last=0"))
    last = ckpt.checkpoint_dir(out) / "step-00000004.pt"
    last.write_bytes(last.read_bytes()[:1000])
    done = train(cfg(out, "run.keep_last=0"), resume=True)
    assert done.steps == 4 and _steps(out) == [1, 2, 3, 4]
    assert ckpt.load_checkpoint(last)["position"]["step"] == 4  # written again, whole
