"""Score processors of generation: pure functions over (rows, V) scores and (rows, t) ids, in
transformers' order (repetition penalty, n-gram ban, min length), and the sampling warp.

Repetition penalty divides positive scores and multiplies negative ones, over every token of the
sequence so far (prompt included); in beam search it acts on log-probabilities (transformers
applies its processors after log_softmax there), in greedy/sampling on logits.
"""

from __future__ import annotations

import torch

from openblip.model.generation_config import GenerationConfig

NEG_INF = float("-inf")


def apply_repetition_penalty(scores: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    if penalty == 1.0:
        return scores
    seen = scores.gather(1, ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, ids, seen)


def apply_no_repeat_ngram(scores: torch.Tensor, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Forbid any token that would repeat an n-gram already in the sequence."""
    length = ids.shape[1]
    if n == 0 or length < n:
        return scores
    prefix = ids[:, length + 1 - n :]  # (rows, n-1): the n-gram the next token would complete
    windows = ids.unfold(1, n, 1)  # (rows, W, n)
    row, win = (windows[..., :-1] == prefix[:, None]).all(-1).nonzero(as_tuple=True)
    if row.numel() == 0:
        return scores
    banned = torch.zeros_like(scores, dtype=torch.bool)
    banned[row, windows[row, win, -1]] = True
    return scores.masked_fill(banned, NEG_INF)


def apply_min_length(scores: torch.Tensor, length: int, cfg: GenerationConfig) -> torch.Tensor:
    if length < cfg.min_length:
        scores = scores.clone()
        scores[:, cfg.eos_token_id] = NEG_INF
    return scores


def process(scores: torch.Tensor, ids: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """The processors in transformers' order: repetition, n-gram, min length."""
    scores = apply_repetition_penalty(scores, ids, cfg.repetition_penalty)
    scores = apply_no_repeat_ngram(scores, ids, cfg.no_repeat_ngram_size)
    return apply_min_length(scores, ids.shape[1], cfg)


def warp_for_sampling(logits: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus, Holtzman et al. 2020); at least one token kept."""
    if cfg.temperature != 1.0:
        logits = logits / cfg.temperature
    if cfg.top_k > 0 and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum <= 1 - cfg.top_p
        drop_sorted[:, -1] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, NEG_INF)
    return logits
