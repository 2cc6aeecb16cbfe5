"""The training loop, one for every objective.

    result = train(load_config("configs/pretrain_synth_ci.toml"), resume=True)

Runs in one process or under torchrun (DDP: gloo on CPU, NCCL on CUDA). Per optimizer step:
lr from the schedule, `accumulation` micro-batches (gradient sync on the last only), optional
gradient clipping, AdamW. Checkpoints every `ckpt_every` steps and at the end hold the whole run
state, so `resume=True` continues an interrupted run to the same result (bitwise on CPU). The
trained model is exported to RUN_DIR/model in the openblip format.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from openblip.checkpoint_io import save_pretrained
from openblip.tokenizer import Tokenizer
from openblip.train import checkpoint as C
from openblip.train.batch import Batch
from openblip.train.build import build_model, build_objective
from openblip.train.config import ObjectiveKind, Precision, TrainConfig
from openblip.train.data import BatchBuilder, EpochBatches, TextRule, count_samples, epoch_loader
from openblip.train.distributed import DistEnv, all_reduce_mean, barrier, init_distributed
from openblip.train.objectives import Objective, StepInfo
from openblip.train.optim import Schedule, build_optimizer

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
MODEL_DIR = "model"
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


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    last_metrics: dict[str, float]
    model_dir: Path | None  # the exported model (rank 0), None on other ranks
    seconds: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    p = cfg.run.precision
    if p is Precision.FP32:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if p is Precision.BF16 else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if p is Precision.FP16:
        raise ValueError("fp16 training needs CUDA (GradScaler); use bf16 or fp32 on the CPU")
    if cfg.run.cpu_autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Metrics:
    """metrics.jsonl in the run dir (rank 0), optionally echoed on stdout."""

    def __init__(self, path: Path | None, echo: bool) -> None:
        self.file: TextIO | None = path.open("a", encoding="utf-8") if path is not None else None
        self.echo = echo and path is not None

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        if self.echo:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _trim_metrics(path: Path, upto: int) -> None:
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


def _text_rule(cfg: TrainConfig) -> TextRule:
    kind = cfg.objective.kind
    if kind is ObjectiveKind.CAPTION:
        return TextRule(prompt=cfg.objective.prompt)
    return TextRule(vqa=kind is ObjectiveKind.VQA)


def _check(cfg: TrainConfig, env: DistEnv) -> None:
    if not cfg.data.train:
        raise ValueError("data.train is not set: give shards, a .tar or a .jsonl list")
    if cfg.run.accumulation < 1 or cfg.data.batch_size < 1:
        raise ValueError("data.batch_size and run.accumulation must be >= 1")
    for key, every in (("run.log_every", cfg.run.log_every), ("run.ckpt_every", cfg.run.ckpt_every)):
        if every < 1:
            raise ValueError(f"{key} must be >= 1 (steps between records), got {every}")
    contrastive = cfg.objective.kind in (ObjectiveKind.PRETRAIN, ObjectiveKind.RETRIEVAL)
    if contrastive and env.distributed and not cfg.data.pad_to_max:
        raise ValueError("ITC/ITM across processes gathers token ids: set data.pad_to_max = true")


def _state(
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    position: C.DataPosition,
    lr: float,
    cfg: TrainConfig,
    rng: list[dict[str, Any]],
) -> dict[str, Any]:
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


def _gather_rng(env: DistEnv) -> list[dict[str, Any]]:
    mine = C.rng_state()
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


def _check_same_config(path: Path, saved: dict[str, Any], cfg: TrainConfig) -> None:
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


def _restore(
    path: Path,
    state: dict[str, Any],
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    env: DistEnv,
    cfg: TrainConfig,
) -> C.DataPosition:
    _check_same_config(path, state["config"], cfg)
    full = {f"model.{k}": v for k, v in state["model"].items()} | state["objective"]
    objective.load_state_dict(full, strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    if len(rng) != env.world_size:
        log.warning("checkpoint saved by %d processes, resuming on %d: RNG streams restart", len(rng), env.world_size)
    C.set_rng_state(_cpu_rng(rng[env.rank % len(rng)]))
    position = C.DataPosition.from_dict(state["position"])
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


def train(cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Train as `cfg` says; with `resume`, continue from the run dir's latest checkpoint if any.
    Without `resume`, a run dir that already holds checkpoints is refused (ValueError): a new run
    there would mix its checkpoints with the old run's."""
    start_time = time.time()
    env = init_distributed()
    _check(cfg, env)
    run_dir = Path(cfg.run.out_dir)
    seed_everything(cfg.run.seed)  # same seed on every rank: identical initial weights
    tokenizer = Tokenizer.default()
    model = build_model(cfg).to(env.device)
    micro_global = cfg.data.batch_size * env.world_size
    objective = build_objective(cfg, model, micro_global, tokenizer).to(env.device)
    objective.train()
    optimizer = build_optimizer(model, cfg.optim)
    cuda = env.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.run.precision is Precision.FP16)

    samples = cfg.data.samples_per_epoch or count_samples(cfg.data.train)
    per_step = micro_global * cfg.run.accumulation
    steps_per_epoch = samples // per_step
    if steps_per_epoch < 1:
        raise ValueError(f"{samples} samples do not fill one step of {per_step} (batch x processes x accumulation)")
    total = cfg.schedule.epochs * steps_per_epoch
    if cfg.schedule.max_steps:
        total = min(total, cfg.schedule.max_steps)
    schedule = Schedule(cfg.schedule, cfg.optim.lr, steps_per_epoch, total)

    position = C.DataPosition()
    latest = C.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise ValueError(
            f"{run_dir} already holds a run's checkpoints (latest {latest}): resume it (--resume), "
            "or choose another run.out_dir"
        )
    found = C.load_latest(run_dir, map_location=env.device) if resume else None
    if found is not None:
        position = _restore(*found, objective, optimizer, scaler, env, cfg)
    elif resume:
        log.info("no checkpoint in %s yet: starting at step 0", run_dir)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _trim_metrics(run_dir / METRICS_FILE, position.step)
        (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    metrics = _Metrics(run_dir / METRICS_FILE if env.is_main else None, cfg.run.metrics_stdout)
    wrapped: torch.nn.Module = objective
    if env.distributed:
        wrapped = DistributedDataParallel(
            objective, device_ids=[env.local_rank] if cuda else None, broadcast_buffers=False
        )
    builder = BatchBuilder(cfg.data, cfg.model.image_size, tokenizer, _text_rule(cfg), cfg.run.seed)
    bar = tqdm(
        total=total,
        initial=position.step,
        disable=not (cfg.run.progress and env.is_main and sys.stderr.isatty()),
        file=sys.stderr,
        unit="step",
    )
    last: dict[str, float] = {}
    lr = schedule.lr(position.step)
    window_start, window_images = time.time(), 0
    try:
        while position.step < total:
            it = _epoch_iter(cfg, builder, position, steps_per_epoch, env)
            epoch = position.epoch
            while position.epoch == epoch and position.step < total:
                lr = schedule.apply(optimizer, position.step)
                info_progress = position.step / steps_per_epoch
                losses: dict[str, torch.Tensor] = {}
                for k in range(cfg.run.accumulation):
                    batch = _next_batch(it, position, cfg.data.train).to(env.device)
                    window_images += len(batch) * env.world_size
                    sync = k == cfg.run.accumulation - 1 or not env.distributed
                    ctx = contextlib.nullcontext() if sync else wrapped.no_sync()  # type: ignore[operator]
                    with ctx:
                        with _autocast(cfg, env.device):
                            losses = wrapped(batch, StepInfo(info_progress, new_step=k == 0))
                        scaler.scale(losses["loss"] / cfg.run.accumulation).backward()
                if cfg.optim.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                offset = position.offset + per_step
                if offset >= steps_per_epoch * per_step:
                    position = C.DataPosition(epoch + 1, position.step + 1, 0)
                else:
                    position = C.DataPosition(epoch, position.step + 1, offset)
                bar.update(1)
                done = position.step == total
                if position.step % cfg.run.log_every == 0 or done:
                    values = {k: float(v.detach()) for k, v in losses.items()}
                    values = all_reduce_mean(values, env.device)
                    now = time.time()
                    last = {
                        "step": position.step,
                        "epoch": position.step / steps_per_epoch,
                        "lr": lr,
                        **values,
                        "images_per_s": window_images / max(now - window_start, 1e-9),
                        "elapsed_s": now - start_time,
                    }
                    if model.temp is not None:
                        last["temp"] = model.temp.item()
                    metrics.write(last)
                    bar.set_postfix(loss=f"{values['loss']:.3f}")
                    window_start, window_images = now, 0
                if position.step % cfg.run.ckpt_every == 0 or done:
                    rng = _gather_rng(env)
                    if env.is_main:
                        state = _state(objective, optimizer, scaler, position, lr, cfg, rng)
                        C.save_checkpoint(run_dir, position.step, state, cfg.run.keep_last)
                    barrier()
        model_dir = None
        if env.is_main:
            model_dir = export_model(objective, tokenizer, run_dir / MODEL_DIR)
        barrier()
    finally:
        bar.close()
        metrics.close()
    return TrainResult(run_dir, position.step, last, model_dir, time.time() - start_time)


def _epoch_iter(
    cfg: TrainConfig, builder: BatchBuilder, position: C.DataPosition, steps_per_epoch: int, env: DistEnv
) -> Iterator[Batch]:
    """The rest of the current epoch's micro-batches for this rank."""
    micro_global = cfg.data.batch_size * env.world_size
    left = steps_per_epoch * cfg.run.accumulation - position.offset // micro_global
    dataset = EpochBatches(cfg.data.train, builder, position.epoch, position.offset, left, env.rank, env.world_size)
    return iter(epoch_loader(dataset, cfg.data.num_workers))


def _next_batch(it: Iterator[Batch], position: C.DataPosition, source: str) -> Batch:
    try:
        return next(it)
    except StopIteration:
        raise ValueError(
            f"{source} ran out of samples in epoch {position.epoch} (at sample {position.offset}); "
            "data.samples_per_epoch is larger than the data, or samples were skipped as unreadable"
        ) from None


def export_model(objective: Objective, tokenizer: Tokenizer, directory: Path) -> Path:
    """The trained model in the openblip format (config, safetensors, tokenizer files)."""
    save_pretrained(objective.model, tokenizer, directory)
    log.info("exported the model to %s", directory)
    return directory
