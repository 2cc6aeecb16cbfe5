"""Build what a TrainConfig describes: the model (sizes, text init, starting weights) and its
objective."""

from __future__ import annotations

import dataclasses
import logging

import torch

from openblip.checkpoint_io import load_model
from openblip.config import BlipConfig, preset
from openblip.model.blip import BERT_INIT_STD, Blip
from openblip.model.vision import resize_pos_embed
from openblip.tokenizer import Tokenizer
from openblip.train.config import ModelSection, ObjectiveKind, SizeOverrides, TextInit, TrainConfig
from openblip.train.objectives import (
    CaptionObjective,
    Objective,
    PretrainObjective,
    RetrievalObjective,
    VqaObjective,
)
from openblip.train.text_init import init_text_from_minilm, minilm_text_config

log = logging.getLogger(__name__)


def _sizes(o: SizeOverrides) -> dict[str, int]:
    return {k: v for k, v in dataclasses.asdict(o).items() if v}


def model_config(sec: ModelSection) -> BlipConfig:
    """The BlipConfig of a model section: preset, then sizes, image size, dropout, text init."""
    cfg = preset(sec.arch, sec.layout, embed_dim=sec.embed_dim)
    vision = dataclasses.replace(
        cfg.vision,
        image_size=sec.image_size,
        drop_path=sec.drop_path,
        patch_size=sec.patch_size or cfg.vision.patch_size,
        **_sizes(sec.vision),
    )
    text = dataclasses.replace(cfg.text, dropout=sec.dropout, **_sizes(sec.text))
    if sec.text_init is TextInit.MINILM:
        fixed = set(_sizes(sec.text)) - {"depth"}
        if fixed:
            key = sorted(fixed)[0]
            raise ValueError(f"model.text.{key} conflicts with text_init = 'minilm' (only depth may change)")
        text = minilm_text_config(text, depth=sec.text.depth)
    if sec.image_size % vision.patch_size:
        raise ValueError(f"model.image_size {sec.image_size} is not a multiple of the patch size {vision.patch_size}")
    return cfg.replace(vision=vision, text=text)


def transfer_weights(source: dict[str, torch.Tensor], model: Blip) -> list[str]:
    """Load a trained model's state into `model` (fine-tuning from a pretrained checkpoint).

    Every tensor of `model` must be present with its shape (a missing key or a shape mismatch is an
    error naming it); the ViT position embeddings are resized to the new grid, the one
    adaptation. Source tensors the model has no place for (the pretraining heads when fine-tuning a
    captioner, ...) are returned, as the original's load_checkpoint ignores them."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in source)
    if missing:
        raise ValueError(f"the starting checkpoint lacks {len(missing)} tensors of this model: {missing[:8]}")
    bad: list[str] = []
    with torch.no_grad():
        for key, target in own.items():
            value = source[key]
            if key == "visual_encoder.pos_embed" and value.shape != target.shape:
                value = resize_pos_embed(value, model.cfg.vision.grid)
            if value.shape != target.shape:
                bad.append(f"{key}: {tuple(value.shape)} vs {tuple(target.shape)}")
                continue
            target.copy_(value)
    if bad:
        raise ValueError(f"starting checkpoint shapes differ from this model: {bad[:8]}")
    return sorted(set(source) - set(own))


def build_model(cfg: TrainConfig) -> Blip:
    """A fresh model (seeded by the caller), then MiniLM text weights or a starting checkpoint."""
    sec = cfg.model
    model = Blip(model_config(sec))
    if sec.init_std <= 0:
        raise ValueError(f"model.init_std must be > 0, got {sec.init_std}")
    if sec.init_std != BERT_INIT_STD:  # Blip() already drew the text side at BERT's std
        model.init_text_weights(sec.init_std)
    if sec.text_init is TextInit.MINILM:
        init_text_from_minilm(model, seed=cfg.run.seed)
    if sec.init_from:
        loaded = load_model(sec.init_from)
        unused = transfer_weights(loaded.model.state_dict(), model)
        if unused:
            log.info("%d tensors of %s not used by this model (e.g. %s)", len(unused), sec.init_from, unused[0])
    model.set_grad_checkpointing(sec.grad_checkpointing)
    return model


def prompt_length(tokenizer: Tokenizer, prompt: str) -> int:
    """len(tokenizer(prompt).input_ids) - 1 as blip.py: [CLS] + the prompt's pieces, no [SEP]."""
    return int(tokenizer.encode([prompt]).ids.shape[1]) - 1


def queue_size_for(configured: int, global_batch: int) -> int:
    """The ITC queue is filled one global batch (batch_size x processes) at a time, so its size
    must be a multiple of that batch. A configured size that is not (a config written for another
    process count) is rounded down to the nearest multiple, at least one global batch: down keeps
    the config's intent that an image's own past features stay out of a small dataset's queue."""
    if configured < 1:
        raise ValueError(f"objective.queue_size must be >= 1, got {configured}")
    size = max(global_batch, configured // global_batch * global_batch)
    if size != configured:
        log.warning(
            "objective.queue_size %d is not a multiple of the global batch %d (batch_size x processes): using %d",
            configured,
            global_batch,
            size,
        )
    return size


def build_objective(cfg: TrainConfig, model: Blip, global_batch: int, tokenizer: Tokenizer) -> Objective:
    o = cfg.objective
    if o.kind in (ObjectiveKind.PRETRAIN, ObjectiveKind.RETRIEVAL):
        cls = PretrainObjective if o.kind is ObjectiveKind.PRETRAIN else RetrievalObjective
        return cls(
            model,
            queue_size=queue_size_for(o.queue_size, global_batch),
            momentum=o.momentum,
            alpha=o.alpha,
            alpha_ramp_epochs=o.alpha_ramp_epochs,
            negatives_seed=o.negatives_seed,
            global_batch=global_batch,
        )
    if o.kind is ObjectiveKind.CAPTION:
        return CaptionObjective(model, prompt_length(tokenizer, o.prompt))
    return VqaObjective(model)
