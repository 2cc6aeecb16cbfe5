"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model, the objective's extra state (momentum encoders, queues, the
negative-sampling generator), optimizer, scheduler position, GradScaler, the RNG states (python,
numpy, torch, cuda) and the data position (epoch, step, samples consumed in the epoch). Files are
written to a temporary name and renamed, so a killed process never leaves a truncated checkpoint;
the last `keep` are kept. Resuming takes the newest readable one (`load_latest`): a checkpoint damaged
after it was written is logged and passed over. Loaded with weights_only=True (plain containers and tensors only).
"""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


@dataclass(frozen=True)
class DataPosition:
    """Where training stands: `step` optimizer steps done; `epoch` the current epoch; `offset`
    global samples of that epoch already consumed."""

    epoch: int = 0
    step: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataPosition:
        return cls(epoch=int(d["epoch"]), step=int(d["step"]), offset=int(d["offset"]))


def rng_state() -> dict[str, Any]:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` as checkpoints/step-NNNNNNNN.pt atomically; delete all but the newest `keep`."""
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step-{step:08d}.pt"
    tmp = d / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(d)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    log.info("saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}")
    try:
        state: dict[str, Any] = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{p} is not a readable training checkpoint: {e}") from e
    for key in ("model", "objective", "optimizer", "position", "rng", "config"):
        if key not in state:
            raise ValueError(f"{p} is not a training checkpoint: missing {key!r}")
    return state


def load_latest(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of the newest readable checkpoint, None when there is none. An unreadable
    one (damaged after it was written) is logged and passed over for the one before it."""
    found = list_checkpoints(run_dir)
    errors: list[str] = []
    for path in reversed(found):
        try:
            return path, load_checkpoint(path, map_location)
        except ValueError as e:
            log.warning("passing over an unreadable checkpoint: %s", e)
            errors.append(str(e))
    if errors:
        raise ValueError(f"no readable checkpoint in {checkpoint_dir(run_dir)}: {'; '.join(errors)}")
    return None


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
