"""AdamW with weight-decay groups and the learning-rate schedules of the original utils.py."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from openblip.train.config import Decay, OptimSection, ScheduleSection

# Parameters named like these are never decayed, whatever their shape: learned positions and
# the ViT's CLS token are "embeddings", not weights of a linear map.
_NO_DECAY_NAMES = ("pos_embed", "cls_token", "embeddings.position", "temp")


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, LayerNorm gains (all 1-D), position embeddings, CLS/pos tokens and the temperature."""
    return param.ndim <= 1 or any(part in name for part in _NO_DECAY_NAMES)


def param_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, object]]:
    """Two AdamW groups, decay and no-decay, over the trainable parameters (each shared parameter
    once: named_parameters() already drops duplicates)."""
    decay: list[nn.Parameter] = []
    keep: list[nn.Parameter] = []
    for name, p in named:
        if not p.requires_grad:
            continue
        (keep if no_decay(name, p) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimSection) -> torch.optim.AdamW:
    """AdamW over the two groups; the fused kernel where torch has one (CPU and CUDA): one pass
    over each tensor instead of six, which matters for the 30524-row word embeddings."""
    groups = param_groups(model.named_parameters(), cfg.weight_decay)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in model.parameters())
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)


@dataclass(frozen=True)
class Schedule:
    """lr(step) for a run of `total_steps` optimizer steps, `steps_per_epoch` per epoch."""

    cfg: ScheduleSection
    base_lr: float
    steps_per_epoch: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.steps_per_epoch <= 0 or self.total_steps <= 0:
            raise ValueError(f"a schedule needs steps: {self.steps_per_epoch} per epoch, {self.total_steps} in all")

    def lr(self, step: int) -> float:
        """Linear warmup from warmup_lr over warmup_steps (pretrain.py `warmup_lr_schedule`), then:
        STEP   max(min_lr, lr * rate**epoch)                        (`step_lr_schedule`)
        COSINE (lr - min_lr) * 0.5 * (1 + cos(pi * t)) + min_lr     (`cosine_lr_schedule`)
        where epoch / t count whole epochs with per_epoch (the original) or run fractionally."""
        c = self.cfg
        if step < c.warmup_steps:
            return c.warmup_lr + (self.base_lr - c.warmup_lr) * step / c.warmup_steps
        epoch = step / self.steps_per_epoch
        if c.per_epoch:
            epoch = math.floor(epoch)
        if c.decay is Decay.CONSTANT:
            return self.base_lr
        if c.decay is Decay.STEP:
            return max(c.min_lr, self.base_lr * c.decay_rate**epoch)
        # COSINE over the epochs (per_epoch) or over the steps after warmup.
        if c.per_epoch:
            total_epochs = self.total_steps / self.steps_per_epoch
            t = epoch / total_epochs
        else:
            span = max(1, self.total_steps - c.warmup_steps)
            t = (step - c.warmup_steps) / span
        t = min(1.0, t)
        return (self.base_lr - c.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t)) + c.min_lr

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
