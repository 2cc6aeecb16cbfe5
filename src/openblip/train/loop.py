"""The training loop, one for every objective.

    result = train(load_config("configs/pretrain_synth_ci.toml"), resume=True)

Runs in one process or under torchrun (DDP: gloo on CPU, NCCL on CUDA). Per optimizer step:
lr from the schedule, `accumulation` micro-batches (gradient sync on the last only), optional
gradient clipping, AdamW. Checkpoints every `ckpt_every` steps and at the end hold the whole run
state (train/resume.py), so `resume=True` continues an interrupted run to the same result: on the
CPU bitwise that of an uninterrupted run, with several threads as with one; on CUDA with
`run.deterministic` (train/deterministic.py, torch's deterministic algorithms). The trained model
is exported to RUN_DIR/model in the openblip format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from openblip.checkpoint_io import save_pretrained
from openblip.tokenizer import Tokenizer
from openblip.train import checkpoint as ckpt
from openblip.train.batch import Batch
from openblip.train.build import build_model, build_objective
from openblip.train.config import DataSection, ObjectiveKind, Precision, TrainConfig
from openblip.train.data import BatchBuilder, EpochBatches, TextRule, count_samples, epoch_loader
from openblip.train.deterministic import deterministic_training
from openblip.train.distributed import DistEnv, all_reduce_mean, barrier, init_distributed
from openblip.train.objectives import Objective, StepInfo
from openblip.train.optim import Schedule, build_optimizer
from openblip.train.progress import Metrics, Progress
from openblip.train.resume import gather_rng, restore, run_state, trim_metrics

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
MODEL_DIR = "model"


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


def _data_section(cfg: TrainConfig, env: DistEnv) -> DataSection:
    """The data settings the batches are built with. ITC/ITM under DDP gather token ids from every
    process, which needs one sequence length everywhere: pad to data.max_length then."""
    contrastive = cfg.objective.kind in (ObjectiveKind.PRETRAIN, ObjectiveKind.RETRIEVAL)
    if contrastive and env.distributed and not cfg.data.pad_to_max:
        if env.is_main:
            log.info("%d processes gather token ids: padding captions to data.max_length", env.world_size)
        return dataclasses.replace(cfg.data, pad_to_max=True)
    return cfg.data


@dataclass
class _Run:
    """Everything one training run holds, built by `_start`."""

    cfg: TrainConfig
    env: DistEnv
    run_dir: Path
    tokenizer: Tokenizer
    objective: Objective
    wrapped: torch.nn.Module  # the objective, in DDP when distributed
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Schedule
    builder: BatchBuilder
    steps_per_epoch: int
    total: int
    position: ckpt.DataPosition

    @property
    def per_step(self) -> int:
        return self.cfg.data.batch_size * self.env.world_size * self.cfg.run.accumulation


def _start(cfg: TrainConfig, resume: bool) -> _Run:
    """Build the model, objective, optimizer and schedule; restore the latest checkpoint (resume)."""
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

    position = ckpt.DataPosition()
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise ValueError(
            f"{run_dir} already holds a run's checkpoints (latest {latest}): resume it (--resume), "
            "or choose another run.out_dir"
        )
    found = ckpt.load_latest(run_dir, map_location=env.device) if resume else None
    if found is not None:
        position = restore(*found, objective, optimizer, scaler, env, cfg)
    elif resume:
        log.info("no checkpoint in %s yet: starting at step 0", run_dir)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        trim_metrics(run_dir / METRICS_FILE, position.step)
        (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    wrapped: torch.nn.Module = objective
    if env.distributed:
        wrapped = _ddp(objective, [env.local_rank] if cuda else None)
    builder = BatchBuilder(_data_section(cfg, env), cfg.model.image_size, tokenizer, _text_rule(cfg), cfg.run.seed)
    return _Run(
        cfg, env, run_dir, tokenizer, objective, wrapped, optimizer, scaler, schedule, builder,
        steps_per_epoch, total, position,
    )  # fmt: skip


def _ddp(objective: Objective, device_ids: list[int] | None) -> DistributedDataParallel:
    """DDP without the per-forward buffer broadcast: the buffers (the queues) change identically on
    every rank. torch 2.13 renamed the switch (broadcast_buffers is deprecated, with a warning)."""
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return DistributedDataParallel(objective, device_ids=device_ids, forward_sync_buffers=False)
    return DistributedDataParallel(objective, device_ids=device_ids, broadcast_buffers=False)


def _optimizer_step(run: _Run, it: Iterator[Batch]) -> tuple[dict[str, torch.Tensor], int]:
    """One optimizer step over `accumulation` micro-batches; returns the last micro-batch's losses
    and the images seen (all processes)."""
    cfg, env = run.cfg, run.env
    progress = run.position.step / run.steps_per_epoch
    losses: dict[str, torch.Tensor] = {}
    images = 0
    for k in range(cfg.run.accumulation):
        batch = _next_batch(it, run.position, cfg.data.train).to(env.device)
        images += len(batch) * env.world_size
        sync = k == cfg.run.accumulation - 1 or not env.distributed
        ctx = contextlib.nullcontext() if sync else run.wrapped.no_sync()  # type: ignore[operator]
        with ctx:
            with _autocast(cfg, env.device):
                losses = run.wrapped(batch, StepInfo(progress, new_step=k == 0))
            run.scaler.scale(losses["loss"] / cfg.run.accumulation).backward()
    if cfg.optim.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.objective.model.parameters(), cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return losses, images


def _advance(run: _Run) -> None:
    """The data position after one optimizer step (the next epoch after its last step)."""
    p = run.position
    offset = p.offset + run.per_step
    if offset >= run.steps_per_epoch * run.per_step:
        run.position = ckpt.DataPosition(p.epoch + 1, p.step + 1, 0)
    else:
        run.position = ckpt.DataPosition(p.epoch, p.step + 1, offset)


def _record(
    run: _Run, losses: dict[str, torch.Tensor], lr: float, images_per_s: float, elapsed: float
) -> dict[str, float]:
    """The metrics record of this step: losses averaged over processes, lr, throughput."""
    values = all_reduce_mean({k: float(v.detach()) for k, v in losses.items()}, run.env.device)
    step = run.position.step
    record = {
        "step": step,
        "epoch": step / run.steps_per_epoch,
        "lr": lr,
        **values,
        "images_per_s": images_per_s,
        "elapsed_s": elapsed,
    }
    temp = run.objective.model.temp
    if temp is not None:
        record["temp"] = temp.item()
    return record


def _checkpoint(run: _Run, lr: float) -> None:
    rng = gather_rng(run.env)  # a collective: every rank takes part
    if run.env.is_main:
        state = run_state(run.objective, run.optimizer, run.scaler, run.position, lr, run.cfg, rng)
        ckpt.save_checkpoint(run.run_dir, run.position.step, state, run.cfg.run.keep_last)
    barrier()


def train(cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Train as `cfg` says; with `resume`, continue from the run dir's latest checkpoint if any.
    Without `resume`, a run dir that already holds checkpoints is refused (ValueError): a new run
    there would mix its checkpoints with the old run's."""
    start_time = time.time()
    run = _start(cfg, resume)
    with deterministic_training(cfg.run.deterministic, run.env.device):
        return _run(cfg, run, start_time)


def _run(cfg: TrainConfig, run: _Run, start_time: float) -> TrainResult:
    """Train from `run`'s position to its last step; export the model (rank 0)."""
    main = run.env.is_main
    metrics = Metrics(run.run_dir / METRICS_FILE if main else None, cfg.run.metrics_stdout)
    progress = Progress(run.position.step, run.total, enabled=cfg.run.progress and main)
    last: dict[str, float] = {}
    lr = run.schedule.lr(run.position.step)
    window_start, window_images = time.time(), 0
    try:
        while run.position.step < run.total:
            it = _epoch_iter(cfg, run.builder, run.position, run.steps_per_epoch, run.env)
            epoch = run.position.epoch
            while run.position.epoch == epoch and run.position.step < run.total:
                lr = run.schedule.apply(run.optimizer, run.position.step)
                losses, images = _optimizer_step(run, it)
                window_images += images
                _advance(run)
                progress.step()
                done = run.position.step == run.total
                if run.position.step % cfg.run.log_every == 0 or done:
                    now = time.time()
                    rate = window_images / max(now - window_start, 1e-9)
                    last = _record(run, losses, lr, rate, now - start_time)
                    metrics.write(last)
                    progress.report(run.position.step, last["loss"], rate)
                    window_start, window_images = now, 0
                if run.position.step % cfg.run.ckpt_every == 0 or done:
                    _checkpoint(run, lr)
        model_dir = export_model(run.objective, run.tokenizer, run.run_dir / MODEL_DIR) if main else None
        barrier()
    finally:
        progress.close()
        metrics.close()
    return TrainResult(run.run_dir, run.position.step, last, model_dir, time.time() - start_time)


def _epoch_iter(
    cfg: TrainConfig, builder: BatchBuilder, position: ckpt.DataPosition, steps_per_epoch: int, env: DistEnv
) -> Iterator[Batch]:
    """The rest of the current epoch's micro-batches for this rank."""
    micro_global = cfg.data.batch_size * env.world_size
    left = steps_per_epoch * cfg.run.accumulation - position.offset // micro_global
    dataset = EpochBatches(cfg.data.train, builder, position.epoch, position.offset, left, env.rank, env.world_size)
    return iter(epoch_loader(dataset, cfg.data.num_workers))


def _next_batch(it: Iterator[Batch], position: ckpt.DataPosition, source: str) -> Batch:
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
