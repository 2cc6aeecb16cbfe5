"""A tiny preset: the whole loop (benchmark, both trainings, three bootstrap runs, five arms, the
table) in well under a minute, for the tests of its plumbing; the quick preset's own test checks
the science."""

from __future__ import annotations

import pytest

from openblip.data.synthetic import SynthSize
from openblip.reproduce.presets import Budget, Preset
from openblip.train.config import ModelSection, SizeOverrides

TINY = Preset(
    name="tiny-test",
    data=SynthSize(train=8, web=12, test=4),
    web_noise=0.5,
    model=ModelSection(
        arch="tiny",
        layout="pretrain",
        image_size=64,
        patch_size=32,
        vision=SizeOverrides(width=32, depth=1, heads=2, mlp_dim=64),
        text=SizeOverrides(width=32, depth=2, heads=2, mlp_dim=64),
        embed_dim=16,
        init_std=0.1,
    ),
    pretrain=Budget(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, queue_size=8),
    finetune=Budget(steps=2, batch_size=4, lr=1e-3, warmup_steps=1, queue_size=8),
    seeds=(0,),
    caption_max_length=12,
    eval_images=4,
    k_test=2,
    samples_per_shard=5,
    ckpt_every=2,
)


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Tiny models (tests/conftest.py); one thread also makes a resumed training bitwise equal."""
