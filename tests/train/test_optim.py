"""Weight-decay groups and the learning-rate schedules (the original utils.py formulas)."""

from __future__ import annotations

import math

import pytest
import torch

from openblip.config import preset
from openblip.model.blip import Blip
from openblip.train.config import Decay, OptimSection, ScheduleSection
from openblip.train.optim import Schedule, build_optimizer, no_decay, param_groups


def test_no_decay_for_biases_norms_positions_tokens_and_temp() -> None:
    model = Blip(preset("tiny", "pretrain"))
    groups = param_groups(model.named_parameters(), 0.05)
    decay_ids = {id(p) for p in groups[0]["params"]}  # type: ignore[attr-defined]
    keep_ids = {id(p) for p in groups[1]["params"]}  # type: ignore[attr-defined]
    named = dict(model.named_parameters())
    for name in (
        "visual_encoder.cls_token",
        "visual_encoder.pos_embed",
        "temp",
        "text_encoder.embeddings.position.weight",
        "text_encoder.embeddings.norm.weight",
        "visual_encoder.blocks.0.attn.qkv.bias",
        "text_decoder.head.bias",
    ):
        assert id(named[name]) in keep_ids, name
    for name in ("visual_encoder.blocks.0.attn.qkv.weight", "text_encoder.embeddings.word.weight", "itm_head.weight"):
        assert id(named[name]) in decay_ids, name
    # every trainable parameter exactly once (shared encoder/decoder tensors included once)
    assert decay_ids.isdisjoint(keep_ids)
    assert len(decay_ids) + len(keep_ids) == len(list(model.parameters()))
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert no_decay("x.bias", torch.nn.Parameter(torch.zeros(3)))


def test_optimizer_uses_the_groups() -> None:
    model = Blip(preset("tiny", "caption"))
    opt = build_optimizer(model, OptimSection(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.98)))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.98)


def test_pretrain_step_schedule_matches_the_original() -> None:
    # pretrain.yaml: init_lr 3e-4, warmup from 1e-6 over 3000 steps, then 0.9 per epoch, min 1e-6
    cfg = ScheduleSection(epochs=20, warmup_steps=3000, warmup_lr=1e-6, decay=Decay.STEP, min_lr=1e-6, decay_rate=0.9)
    s = Schedule(cfg, 3e-4, steps_per_epoch=5000, total_steps=100000)
    assert s.lr(0) == pytest.approx(1e-6)
    assert s.lr(1500) == pytest.approx(1e-6 + (3e-4 - 1e-6) * 0.5)
    assert s.lr(3000) == pytest.approx(3e-4)  # rest of epoch 0 at the peak
    assert s.lr(4999) == pytest.approx(3e-4)
    assert s.lr(5000) == pytest.approx(3e-4 * 0.9)
    assert s.lr(12345) == pytest.approx(3e-4 * 0.9**2)
    tiny = Schedule(ScheduleSection(warmup_steps=0, decay_rate=0.1, min_lr=1e-5), 1e-3, 10, 100)
    assert tiny.lr(95) == pytest.approx(1e-5)  # floored at min_lr


def test_finetune_cosine_per_epoch_matches_the_original() -> None:
    # cosine_lr_schedule(epoch): (init - min) * 0.5 * (1 + cos(pi * epoch / max_epoch)) + min
    cfg = ScheduleSection(epochs=5, warmup_steps=0, decay=Decay.COSINE, min_lr=0.0)
    s = Schedule(cfg, 1e-5, steps_per_epoch=100, total_steps=500)
    for epoch in range(5):
        expected = 1e-5 * 0.5 * (1 + math.cos(math.pi * epoch / 5))
        assert s.lr(epoch * 100) == pytest.approx(expected)
        assert s.lr(epoch * 100 + 99) == pytest.approx(expected)


def test_per_step_cosine_after_warmup() -> None:
    cfg = ScheduleSection(warmup_steps=10, warmup_lr=0.0, decay=Decay.COSINE, min_lr=1e-4, per_epoch=False)
    s = Schedule(cfg, 1e-3, steps_per_epoch=7, total_steps=110)
    assert s.lr(5) == pytest.approx(5e-4)
    assert s.lr(10) == pytest.approx(1e-3)
    assert s.lr(60) == pytest.approx((1e-3 - 1e-4) * 0.5 + 1e-4)
    assert s.lr(110) == pytest.approx(1e-4)


def test_apply_sets_every_group() -> None:
    model = Blip(preset("tiny", "caption"))
    opt = build_optimizer(model, OptimSection())
    s = Schedule(ScheduleSection(decay=Decay.CONSTANT, warmup_steps=0), 0.01, 1, 1)
    assert s.apply(opt, 0) == 0.01
    assert all(g["lr"] == 0.01 for g in opt.param_groups)


def test_schedule_needs_steps() -> None:
    with pytest.raises(ValueError, match="needs steps"):
        Schedule(ScheduleSection(), 1e-3, 0, 10)
