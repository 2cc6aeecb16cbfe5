"""Training batches: tensors only, already tokenized and transformed (train/data.py builds them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class ImageTextBatch:
    """Image-caption pairs for pretraining, captioning and retrieval.

    pixels (B, 3, S, S); ids/mask (B, L) with [CLS] first (the objectives substitute [ENC]/[DEC]);
    image_ids (B,) identify the image, so captions of one image count as positives (retrieval)
    and never as hard negatives."""

    pixels: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    image_ids: torch.Tensor

    def to(self, device: torch.device) -> ImageTextBatch:
        return ImageTextBatch(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


@dataclass
class VqaBatch:
    """Questions with their weighted answers (the original vqa_collate_fn).

    pixels (B, 3, S, S); question_ids/mask (B, Lq); answer_ids/mask (A, La), [CLS] first;
    answer_weights (A,); answer_question (A,) the index of each answer's question."""

    pixels: torch.Tensor
    question_ids: torch.Tensor
    question_mask: torch.Tensor
    answer_ids: torch.Tensor
    answer_mask: torch.Tensor
    answer_weights: torch.Tensor
    answer_question: torch.Tensor

    def to(self, device: torch.device) -> VqaBatch:
        return VqaBatch(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


Batch = ImageTextBatch | VqaBatch
