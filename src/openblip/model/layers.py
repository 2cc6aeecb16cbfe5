"""Small building blocks shared by the vision and text transformers."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from openblip.model import cpu_kernel

log = logging.getLogger(__name__)

# The original BERT fork masks with an additive -10000 (salesforce/BLIP models/med.py,
# get_extended_attention_mask). Rows are never fully masked in BLIP, so this equals -inf masking
# up to float rounding, and it stays finite in fp16/bf16.
MASK_VALUE = -10000.0


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, L) 1 = keep, 0 = pad  ->  additive (B, 1, 1, L) bias, or None when nothing is masked."""
    if bool(mask.all()):
        return None
    return ((1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE).to(dtype)


def causal_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) padding mask -> (B, 1, L, L) additive bias that is causal and hides padding."""
    length = mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    keep = causal[None, None] & mask[:, None, None, :].bool()
    return ((~keep).to(dtype) * MASK_VALUE).to(dtype)


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


# Without our CPU kernels (model/cpu_kernel.py), an fp32 inference matmul of at most this many rows
# goes through oneDNN with a prepacked weight: for decoding (a few rows per step) MKL's default GEMM
# streams the weight at a third of the memory bandwidth oneDNN reaches; for more rows both are alike.
SMALL_ROWS = 64
_onednn_failed = False


class PackedWeight:
    """A oneDNN-reordered copy of a weight for small-batch CPU inference (not in state_dict),
    rebuilt whenever the weight's storage, version (in-place updates) or shape changes."""

    def __init__(self) -> None:
        self.key: tuple[int, int, tuple[int, ...]] | None = None
        self.packed: torch.Tensor | None = None

    # A cache: copies and pickles start empty (oneDNN tensors have no storage to copy).
    def __deepcopy__(self, memo: dict[int, object]) -> PackedWeight:
        return PackedWeight()

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]

    def get(self, weight: torch.Tensor) -> torch.Tensor:
        # Inference tensors (a model built under torch.inference_mode) have no version counter.
        version = 0 if weight.is_inference() else weight._version
        key = (weight.data_ptr(), version, tuple(weight.shape))
        if key != self.key or self.packed is None:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
            self.key = key
        return self.packed


def _fp32_cpu_inference(*tensors: torch.Tensor) -> bool:
    return not torch.is_grad_enabled() and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def cpu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, packed: PackedWeight) -> torch.Tensor:
    """F.linear; in CPU fp32 inference, our AVX2 kernels (model/cpu_kernel.py: few rows for
    decoding steps, blocked for the rest), or without them oneDNN with a prepacked weight for up
    to SMALL_ROWS rows. Same result up to float summation order."""
    global _onednn_failed
    if not _fp32_cpu_inference(x, weight, *([] if bias is None else [bias])):
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    kernels = cpu_kernel.load()
    product = None if kernels is None else cpu_kernel.pick(kernels, flat, weight, bias)
    if product is not None:
        return product(flat, weight, bias).view(*x.shape[:-1], weight.shape[0])
    if flat.shape[0] > SMALL_ROWS or _onednn_failed or not torch.backends.mkldnn.is_available():
        return F.linear(x, weight, bias)
    try:
        out = torch.ops.mkldnn._linear_pointwise(flat, packed.get(weight), bias, "none", [], "")
    except (RuntimeError, AttributeError) as err:  # e.g. a torch build without these oneDNN ops
        _onednn_failed = True
        log.warning("oneDNN small-batch linear unavailable (%s); using F.linear", err)
        return F.linear(x, weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


def context_scores(q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """q (C, R, D), tokens (C, N, D) -> (C, R, N): torch.bmm(q, tokens^T), on fp32 CPU inference
    through our kernel (model/cpu_kernel.py)."""
    kernels = cpu_kernel.load() if _fp32_cpu_inference(q, tokens) and q.shape[-1] % 16 == 0 else None
    if kernels is None:
        return torch.bmm(q, tokens.transpose(1, 2))
    return kernels.scores(q.contiguous(), tokens.contiguous())


def context_mix(p: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """p (C, R, N), tokens (C, N, D) -> (C, R, D): torch.bmm(p, tokens), on fp32 CPU inference
    through our kernel (model/cpu_kernel.py)."""
    kernels = cpu_kernel.load() if _fp32_cpu_inference(p, tokens) and tokens.shape[-1] % 16 == 0 else None
    if kernels is None:
        return torch.bmm(p, tokens)
    return kernels.mix(p.contiguous(), tokens.contiguous())


def fused_self_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Unmasked self-attention, no dropout: qkv (B, N, 3 D) as one projection lays out [q; k; v]
    -> (B, N, D), heads merged. On fp32 CPU inference our kernel (model/cpu_kernel.py), else SDPA."""
    b, n, d3 = qkv.shape
    hd = d3 // 3 // heads
    kernels = cpu_kernel.load() if _fp32_cpu_inference(qkv) and hd % 16 == 0 else None
    if kernels is None or kernels.attention is None:
        q, k, v = qkv.view(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        return merge_heads(sdpa(q, k, v, None, 0.0))
    return kernels.attention(qkv.contiguous(), heads)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state_dict) with the CPU inference paths of `cpu_linear`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self._packed = PackedWeight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_linear(x, self.weight, self.bias, self._packed)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2 (both originals use the erf GELU, never the tanh approximation)."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(width, hidden)
        self.fc2 = Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))
