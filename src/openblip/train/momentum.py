"""Momentum encoders and the ITC feature queues (ALBEF/BLIP momentum distillation).

Kept outside `Blip`: they exist only for training, so released models never carry them, while the
training checkpoint saves them with the rest of the run state.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from openblip.model.blip import Blip


class MomentumEncoders(nn.Module):
    """EMA copies of the vision encoder, the unimodal text encoder and both projections
    (blip_pretrain.py `visual_encoder_m`, `text_encoder_m`, `vision_proj_m`, `text_proj_m`).
    The decoder has none. Parameters never require gradients."""

    def __init__(self, model: Blip, momentum: float) -> None:
        super().__init__()
        if model.text_encoder is None or model.vision_proj is None or model.text_proj is None:
            raise ValueError("momentum encoders need a model with a text encoder and ITC heads")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.visual_encoder = copy.deepcopy(model.visual_encoder)
        self.text_encoder = copy.deepcopy(model.text_encoder)
        self.vision_proj = copy.deepcopy(model.vision_proj)
        self.text_proj = copy.deepcopy(model.text_proj)
        for p in self.parameters():
            p.requires_grad_(False)

    def _pairs(self, model: Blip) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        mine: list[torch.Tensor] = []
        theirs: list[torch.Tensor] = []
        for name in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
            src = getattr(model, name)
            dst = getattr(self, name)
            for (n_src, p_src), (n_dst, p_dst) in zip(src.named_parameters(), dst.named_parameters()):
                if n_src != n_dst:  # pragma: no cover - both come from the same class
                    raise RuntimeError(f"momentum parameter mismatch: {n_dst} vs {n_src}")
                theirs.append(p_src.detach())
                mine.append(p_dst)
        return mine, theirs

    @torch.no_grad()
    def update(self, model: Blip) -> None:
        """p_m <- m * p_m + (1 - m) * p, for every parameter (the original `_momentum_update`),
        as one lerp pass: p_m + (1 - m) * (p - p_m)."""
        mine, theirs = self._pairs(model)
        torch._foreach_lerp_(mine, theirs, 1.0 - self.momentum)

    @torch.no_grad()
    def features(
        self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Momentum ITC features (B, E) of the images and of the texts, L2-normalised."""
        image = F.normalize(self.vision_proj(self.visual_encoder(pixels)[:, 0]), dim=-1)
        text = F.normalize(self.text_proj(self.text_encoder(ids, mask)[:, 0]), dim=-1)
        return image, text


class FeatureQueue(nn.Module):
    """Ring buffers of past momentum features (size, E), plus image ids for retrieval fine-tuning.

    Rows are features (the original stores the transpose). Image features start as random unit
    vectors, as the original; ids start at -100 so they never match a real id."""

    image: torch.Tensor
    text: torch.Tensor
    ids: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"queue size must be positive, got {size}")
        self.size = size
        self.register_buffer("image", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("text", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ids", torch.full((size,), -100, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def check_batch(self, global_batch: int) -> None:
        if self.size % global_batch:
            raise ValueError(
                f"queue_size {self.size} must be a multiple of the global batch {global_batch} "
                "(batch_size x processes): the queue is filled one global batch at a time"
            )

    @torch.no_grad()
    def enqueue(self, image: torch.Tensor, text: torch.Tensor, ids: torch.Tensor) -> None:
        """Write one global batch (G, E) of momentum features at the pointer and advance it."""
        n = image.shape[0]
        self.check_batch(n)
        p = int(self.ptr)
        self.image[p : p + n] = image.to(self.image.dtype)
        self.text[p : p + n] = text.to(self.text.dtype)
        self.ids[p : p + n] = ids
        self.ptr.fill_((p + n) % self.size)
