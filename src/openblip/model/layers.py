"""Small building blocks shared by the vision and text transformers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openblip.backends import cpu

# The original BERT fork masks with an additive -10000 (salesforce/BLIP models/med.py,
# get_extended_attention_mask). Rows are never fully masked in BLIP, so this equals -inf masking
# up to float rounding, and it stays finite in fp16/bf16.
MASK_VALUE = -10000.0


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, L) 1 = keep, 0 = pad  ->  additive (B, 1, 1, L) bias, or None when nothing is masked."""
    if bool(mask.all()):
        return None
    return ((1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE).to(dtype)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (Huang et al. 2016), as timm's DropPath."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return x * x.new_empty(shape).bernoulli_(keep) / keep


def sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dropout: float = 0.0,
    causal: bool = False,
) -> torch.Tensor:
    """(B, H, Lq, hd) x (B, H, Lk, hd) -> (B, H, Lq, hd); scale hd**-0.5 as both originals."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, is_causal=causal)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, H, L, D/H)"""
    b, length, d = x.shape
    return x.view(b, length, heads, d // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, hd) -> (B, L, H*hd)"""
    b, h, length, hd = x.shape
    return x.transpose(1, 2).reshape(b, length, h * hd)


def fused_self_attention(qkv: torch.Tensor, heads: int, kernels: cpu.CpuKernels = cpu.OFF) -> torch.Tensor:
    """Unmasked self-attention, no dropout: qkv (B, N, 3 D) as one projection lays out [q; k; v]
    -> (B, N, D), heads merged. SDPA, or the CPU kernel where `kernels` takes it."""
    out = cpu.self_attention(kernels, qkv, heads)
    if out is not None:
        return out
    b, n, d3 = qkv.shape
    q, k, v = qkv.view(b, n, 3, heads, d3 // 3 // heads).permute(2, 0, 3, 1, 4)
    return merge_heads(sdpa(q, k, v, None, 0.0))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kernels: cpu.CpuKernels) -> torch.Tensor:
    """F.linear, or the CPU kernel where `kernels` takes it (same result up to float summation order)."""
    out = cpu.linear(kernels, x, weight, bias)
    return F.linear(x, weight, bias) if out is None else out


def context_scores(q: torch.Tensor, tokens: torch.Tensor, kernels: cpu.CpuKernels) -> torch.Tensor:
    """q (C, R, D), tokens (C, N, D) -> (C, R, N): torch.bmm(q, tokens^T), or the CPU kernel."""
    out = cpu.context_scores(kernels, q, tokens)
    return torch.bmm(q, tokens.transpose(1, 2)) if out is None else out


def context_mix(p: torch.Tensor, tokens: torch.Tensor, kernels: cpu.CpuKernels) -> torch.Tensor:
    """p (C, R, N), tokens (C, N, D) -> (C, R, D): torch.bmm(p, tokens), or the CPU kernel."""
    out = cpu.context_mix(kernels, p, tokens)
    return torch.bmm(p, tokens) if out is None else out


class Linear(nn.Linear):
    """nn.Linear (same parameters and state_dict) whose fp32 CPU inference may run on our
    kernels: `cpu_kernels` is the model's choice (Blip.use_cpu_kernels), torch's op by default."""

    cpu_kernels: cpu.CpuKernels = cpu.OFF

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, self.cpu_kernels)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2 (both originals use the erf GELU, never the tanh approximation)."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(width, hidden)
        self.fc2 = Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))
