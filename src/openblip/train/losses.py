"""The loss arithmetic of BLIP's objectives as pure functions of tensors.

The objectives (train/objectives.py) run the model and call these; keeping the arithmetic here
lets each piece be checked against a hand computation. References are salesforce/BLIP
models/blip_pretrain.py, blip_retrieval.py, blip_vqa.py and med.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from openblip.model.text import lm_loss

IGNORE = -100  # label of positions the LM loss skips (padding, the caption prompt)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean_i( -sum_j targets[i, j] * log_softmax(logits)[i, j] ), logits/targets (N, C)."""
    return -(F.log_softmax(logits.float(), dim=1) * targets).sum(dim=1).mean()


def diagonal_positives(rows: int, cols: int, offset: int, device: torch.device) -> torch.Tensor:
    """(rows, cols) one-hot targets: row i's positive is column offset + i (its own pair in the
    globally gathered batch, which comes first in the columns)."""
    t = torch.zeros(rows, cols, device=device)
    t[torch.arange(rows, device=device), offset + torch.arange(rows, device=device)] = 1.0
    return t


def id_positives(row_ids: torch.Tensor, col_ids: torch.Tensor) -> torch.Tensor:
    """(R, C) targets spreading each row's mass over the columns with the same image id
    (blip_retrieval.py: `pos_idx / pos_idx.sum(1)`): captions of the same image are positives."""
    pos = (row_ids[:, None] == col_ids[None, :]).float()
    return pos / pos.sum(dim=1, keepdim=True)


def distill_targets(sim_m: torch.Tensor, positives: torch.Tensor, alpha: float) -> torch.Tensor:
    """Momentum distillation (ALBEF/BLIP): alpha * softmax(momentum sims) + (1 - alpha) * positives."""
    return alpha * F.softmax(sim_m.float(), dim=1) + (1.0 - alpha) * positives


def itc_loss(
    sim_i2t: torch.Tensor, sim_t2i: torch.Tensor, targets_i2t: torch.Tensor, targets_t2i: torch.Tensor
) -> torch.Tensor:
    """Image-text contrastive loss, the mean of both directions."""
    return (soft_cross_entropy(sim_i2t, targets_i2t) + soft_cross_entropy(sim_t2i, targets_t2i)) / 2


def negative_weights(sim: torch.Tensor, exclude: torch.Tensor, eps: float) -> torch.Tensor:
    """Hard-negative sampling weights (N, M): softmax(sim) + eps with excluded pairs (the pair itself
    and any same-image pair) zeroed. Pretraining adds eps = 1e-4, retrieval fine-tuning 0.

    A row whose every candidate is excluded cannot be sampled: a clear error (the batch holds
    captions of one image only)."""
    w = F.softmax(sim.float(), dim=1) + eps
    w = w.masked_fill(exclude, 0.0)
    dead = w.sum(dim=1) <= 0
    if bool(dead.any()):
        # Underflow of every allowed entry: fall back to uniform over the allowed ones.
        allowed = (~exclude).float()
        if bool((allowed[dead].sum(dim=1) == 0).any()):
            raise ValueError("no hard negative available: every pair in the global batch shares one image id")
        w[dead] = allowed[dead]
    return w


def sample_negatives(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row drawn from the row's weights (N,) (on the generator's device)."""
    return torch.multinomial(weights.to(generator.device), 1, generator=generator).squeeze(1)


def itm_loss(logits: torch.Tensor, positives: int) -> torch.Tensor:
    """Cross-entropy of ITM logits (P+N, 2): the first `positives` rows are matches (label 1)."""
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    labels[:positives] = 1
    return F.cross_entropy(logits.float(), labels)


def lm_labels(ids: torch.Tensor, mask: torch.Tensor, prompt_length: int = 0) -> torch.Tensor:
    """Decoder targets: padding and the first `prompt_length` positions ignored.

    With a prompt "a picture of " the ids start [CLS/DEC] a picture of (prompt_length 4, as the
    original computes len(tokenizer(prompt).input_ids) - 1), so the first scored label is the
    first caption word (blip.py BLIP_Decoder.forward)."""
    labels = ids.masked_fill(mask == 0, IGNORE)
    if prompt_length:
        labels[:, :prompt_length] = IGNORE
    return labels


def weighted_answer_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    questions: int,
    label_smoothing: float,
) -> torch.Tensor:
    """VQA: sum(weight * per-answer summed label-smoothed CE) / number of questions (blip_vqa.py)."""
    per_answer = lm_loss(logits, labels, label_smoothing, per_sequence=True)
    return (weights.float() * per_answer).sum() / questions
