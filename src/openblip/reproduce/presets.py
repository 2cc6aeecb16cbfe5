"""The two sizes of `openblip reproduce`: typed, frozen settings (the CLI maps a name to one, once).

What makes CapFilt matter, as in the paper (BLIP section 4.2, Table 1): a small clean split (the
paper's COCO + VG) beside a larger, noisier web split, training long enough that the noisy pairs
hurt, and the paper's filter threshold (ITM probability 0.5). Every arm's second pre-training has
the same budget (steps and batch) as the first one, which is the no-CapFilt arm itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from openblip.data.synthetic import SynthSize
from openblip.reproduce.arms import ALL_ARMS, Arm
from openblip.train.config import ModelSection, SizeOverrides

# A small pre-training-layout BLIP (ITC + ITM + LM, shared encoder/decoder): captioner and filter
# in one model. 32 px patches at 96 px put one patch on each cell of the scenes' 3x3 grid; the
# 30,524-word table dominates the text side's cost, so it stays narrow (random init) and starts at
# std 0.1: at BERT's 0.02 a small encoder attends uniformly, every caption's [CLS] is nearly its own
# embedding, and ITC and ITM never start (train/config.py, model.init_std).
SMALL_MODEL = ModelSection(
    arch="tiny",
    layout="pretrain",
    image_size=96,
    patch_size=32,
    vision=SizeOverrides(width=128, depth=3, heads=4, mlp_dim=256),
    text=SizeOverrides(width=128, depth=2, heads=4, mlp_dim=256),
    embed_dim=64,
    init_std=0.1,
)


@dataclass(frozen=True)
class Budget:
    """One training run: optimizer steps of `batch_size` pairs, linear warmup then cosine decay."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    min_lr: float = 1e-5
    # ITC: a short run from scratch needs momentum encoders that follow within a few steps and
    # a queue well under the number of training images (an image's own past features stay out);
    # distilling from momentum encoders that still give near-identical text features for every
    # caption only holds the features together, so alpha is 0 (the paper's 0.4 assumes
    # pre-trained encoders).
    momentum: float = 0.5
    queue_size: int = 48
    alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"a budget needs steps >= 1 and batch_size >= 2, got {self}")
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be under steps ({self.steps})")


@dataclass(frozen=True)
class Preset:
    name: str
    data: SynthSize  # clean train, noisy web, held-out test images
    web_noise: float  # share of the web alt-texts corrupted (labelled per text)
    model: ModelSection  # layout "pretrain": one model serves as captioner and filter
    pretrain: Budget  # step 1 (the no-CapFilt arm) and every arm's step 4: the same budget
    finetune: Budget  # step 2: captioner and filter, from step 1's model, on the clean split
    seeds: tuple[int, ...]  # default seeds; each seed its own benchmark, models and bootstraps
    arms: tuple[Arm, ...] = ALL_ARMS
    threshold: float = 0.5  # the filter keeps a text when its ITM probability is above this
    top_p: float = 0.9  # nucleus captions (the paper's choice)
    num_beams: int = 3  # the beam arm
    caption_max_length: int = 30  # the scenes' listings are longer than the original's 20 tokens
    eval_images: int = 100  # of the test split: retrieval over all their references, captions
    k_test: int = 16  # retrieval: ITC top k re-ranked by ITM, as BLIP evaluates
    samples_per_shard: int = 200  # small shards: bootstrap resumes shard by shard
    ckpt_every: int = 50  # training checkpoints: a killed run resumes from the last one

    def __post_init__(self) -> None:
        if self.model.layout != "pretrain" or self.model.init_from:
            raise ValueError("a preset's model is a pre-training layout trained from scratch")
        if Arm.NO_CAPFILT not in self.arms or Arm.CAPTIONER_FILTER not in self.arms:
            raise ValueError("a preset compares at least no CapFilt and captioner + filter")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct and >= 0, got {self.seeds}")
        if min(self.data.train, self.data.web) < self.pretrain.batch_size or self.data.test < 2:
            raise ValueError(f"{self.data} is too small for batches of {self.pretrain.batch_size}")


QUICK = Preset(
    name="quick",
    data=SynthSize(train=200, web=800, test=100),
    web_noise=0.6,
    model=SMALL_MODEL,
    pretrain=Budget(steps=150, batch_size=16, lr=1e-3, warmup_steps=15),
    finetune=Budget(steps=40, batch_size=16, lr=3e-4, warmup_steps=4),
    seeds=(0,),
)

FULL = Preset(
    name="full",
    data=SynthSize(train=1000, web=4000, test=500),
    web_noise=0.6,
    model=SMALL_MODEL,
    pretrain=Budget(steps=500, batch_size=32, lr=1e-3, warmup_steps=40, queue_size=96),
    finetune=Budget(steps=100, batch_size=32, lr=3e-4, warmup_steps=10, queue_size=96),
    seeds=(0, 1, 2),
    eval_images=500,
    samples_per_shard=1000,
    ckpt_every=200,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (QUICK, FULL)}
