"""What a training checkpoint holds and how a run continues from one.

A checkpoint is the whole run state: model, objective extras (momentum encoders, queues, the
negatives generator), optimizer, scaler, schedule position, every rank's RNG states, the data
position and the config. `restore` refuses a checkpoint written under another config, naming each
changed key; only where things are and how often to report may change.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from openblip.train import checkpoint as ckpt
from openblip.train.config import TrainConfig
from openblip.train.distributed import DistEnv
from openblip.train.objectives import Objective

log = logging.getLogger(__name__)

# Config keys a resumed run may change: where things are and how often to report. Any other
# change (model, data stream, optimizer, schedule, objective, seed, precision) is refused.
RESUMABLE_KEYS = frozenset(
    {
        "model.init_from",  # the weights come from the checkpoint
        "data.train",  # the data may have moved
        "data.num_workers",  # the stream does not depend on it
        "run.out_dir",
        "run.log_every",
        "run.ckpt_every",
        "run.keep_last",
        "run.metrics_stdout",
        "run.progress",
    }
)


def run_state(
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    position: ckpt.DataPosition,
    lr: float,
    cfg: TrainConfig,
    rng: list[dict[str, Any]],
) -> dict[str, Any]:
    """The checkpoint's contents at `position`."""
    extra = {k: v for k, v in objective.state_dict().items() if not k.startswith("model.")}
    return {
        "model": objective.model.state_dict(),
        "objective": extra,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"step": position.step, "lr": lr},
        "scaler": scaler.state_dict(),
        "rng": rng,
        "position": position.to_dict(),
        "config": cfg.to_dict(),
    }


def gather_rng(env: DistEnv) -> list[dict[str, Any]]:
    """Every rank's RNG states, in rank order (a collective under DDP)."""
    mine = ckpt.rng_state()
    if not env.distributed:
        return [mine]
    everyone: list[Any] = [None] * env.world_size
    dist.all_gather_object(everyone, mine)
    return everyone


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = v
    return out


def check_same_config(path: Path, saved: dict[str, Any], cfg: TrainConfig) -> None:
    """A resumed run must be the run that wrote the checkpoint: name every changed key."""
    old, new = _flat(saved), _flat(cfg.to_dict())
    changed = [
        f"{k} {old[k]!r} -> {new[k]!r}"
        for k in sorted(old.keys() & new.keys())
        if k not in RESUMABLE_KEYS and old[k] != new[k]
    ]
    if changed:
        raise ValueError(
            f"cannot resume from {path}: the config changed since it was saved ({'; '.join(changed)}); "
            "resume with the same settings, or start a new run.out_dir (model.init_from can start from its model)"
        )


def restore(
    path: Path,
    state: dict[str, Any],
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    env: DistEnv,
    cfg: TrainConfig,
) -> ckpt.DataPosition:
    """Load the run state of checkpoint `path` into the run; returns where the data continues."""
    check_same_config(path, state["config"], cfg)
    full = {f"model.{k}": v for k, v in state["model"].items()} | state["objective"]
    objective.load_state_dict(full, strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    if len(rng) != env.world_size:
        log.warning("checkpoint saved by %d processes, resuming on %d: RNG streams restart", len(rng), env.world_size)
    ckpt.set_rng_state(_cpu_rng(rng[env.rank % len(rng)]))
    position = ckpt.DataPosition.from_dict(state["position"])
    log.info("resumed from %s at step %d (epoch %d, sample %d)", path, position.step, position.epoch, position.offset)
    return position


def _cpu_rng(state: dict[str, Any]) -> dict[str, Any]:
    """RNG tensors come back on map_location; the setters want CPU byte tensors."""
    out = dict(state)
    out["torch"] = state["torch"].cpu()
    if "cuda" in state:
        out["cuda"] = [t.cpu() for t in state["cuda"]]
    out["python"] = dict(state["python"], state=state["python"]["state"].cpu())
    out["numpy"] = dict(state["numpy"], keys=state["numpy"]["keys"].cpu())
    return out


def trim_metrics(path: Path, upto: int) -> None:
    """Keep the records of steps <= `upto`, the steps the resumed checkpoint holds (none on a
    fresh start): the run redoes the later steps and logs them again, and a kill may have cut the
    last line short."""
    if not path.is_file():
        return
    kept: list[str] = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(step, int) and step <= upto:
            kept.append(line + "\n")
    if len(kept) == len(lines):
        return
    log.info("%s: dropped %d records after step %d (redone from the checkpoint)", path, len(lines) - len(kept), upto)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
