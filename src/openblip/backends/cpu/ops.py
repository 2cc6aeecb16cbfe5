"""The C kernels as torch custom operators (torch.ops.openblip.*): the dispatcher, torch.compile
and torch.export see each as one op, with a fake (meta) implementation for tracing. Every op
checks its inputs' shapes and dtypes and raises ValueError naming them, in the real and the fake
implementation alike: the C code has no bounds checks, so a shape bug upstream is an exception
here, never a read past a buffer.

The kernels have no backward: the model calls them only in inference (backends/cpu/__init__.py).
"""

# No `from __future__ import annotations`: torch.library infers each op's schema from the
# annotations, which must be real types.

import torch

from openblip.backends.cpu.build import library

MAX_SMALL_ROWS = 16  # up to this many rows small_linear; above, blocked_linear (the model's choice)


def _fp32_cpu(op: str, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.dtype != torch.float32 or t.device.type not in ("cpu", "meta"):
            raise ValueError(f"openblip::{op}: {name} must be a float32 CPU tensor, got {t.dtype} on {t.device}")


def _dims(op: str, name: str, t: torch.Tensor, ndim: int) -> None:
    if t.dim() != ndim:
        raise ValueError(f"openblip::{op}: {name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


def _check_linear(op: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, k_multiple: int) -> None:
    _fp32_cpu(op, x=x, weight=weight, **({} if bias is None else {"bias": bias}))
    _dims(op, "x", x, 2)
    _dims(op, "weight", weight, 2)
    (m, k), (n, kw) = x.shape, weight.shape
    if k != kw:
        raise ValueError(f"openblip::{op}: x {tuple(x.shape)} and weight {tuple(weight.shape)} differ in K")
    if min(m, n, k) < 1:
        raise ValueError(f"openblip::{op}: empty product, x {tuple(x.shape)}, weight {tuple(weight.shape)}")
    if k % k_multiple:
        raise ValueError(f"openblip::{op}: K = {k} must be a multiple of {k_multiple}")
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"openblip::{op}: bias {tuple(bias.shape)} does not match weight {tuple(weight.shape)}")


def _check_context(op: str, a: torch.Tensor, tokens: torch.Tensor, inner: int, d_multiple: int) -> None:
    """a (C, R, inner) against tokens (C, N, D): C equal, a's last dim `inner` (D or N)."""
    _fp32_cpu(op, a=a, tokens=tokens)
    _dims(op, "a", a, 3)
    _dims(op, "tokens", tokens, 3)
    if a.shape[0] != tokens.shape[0] or a.shape[2] != inner:
        raise ValueError(f"openblip::{op}: shapes {tuple(a.shape)} and tokens {tuple(tokens.shape)} do not match")
    if min(*a.shape, *tokens.shape) < 1 or tokens.shape[2] % d_multiple:
        raise ValueError(f"openblip::{op}: tokens {tuple(tokens.shape)} need D a multiple of {d_multiple}, none empty")


def _check_attention(qkv: torch.Tensor, heads: int) -> None:
    _fp32_cpu("attention", qkv=qkv)
    _dims("attention", "qkv", qkv, 3)
    b, n, d3 = qkv.shape
    if heads < 1 or d3 % (3 * heads) or (d3 // 3 // heads) % 16 or min(b, n) < 1:
        raise ValueError(
            f"openblip::attention: qkv {tuple(qkv.shape)} with {heads} heads needs 3 x heads x hd, hd % 16 == 0"
        )


# ---- y = x W^T + b -------------------------------------------------------------------------------


@torch.library.custom_op("openblip::small_linear", mutates_args=())
def small_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N), for a few rows (decoding steps; csrc/small_linear.c)."""
    _check_linear("small_linear", x, weight, bias, 8)
    x, weight = x.contiguous(), weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    (m, k), n = x.shape, weight.shape[0]
    y = torch.empty(m, n, dtype=x.dtype)
    b = None if bias is None else bias.data_ptr()
    library().openblip_small_linear(
        x.data_ptr(), weight.data_ptr(), b, y.data_ptr(), 1, m, n, k, 0, torch.get_num_threads()
    )
    return y


@small_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    _check_linear("small_linear", x, weight, bias, 8)
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("openblip::blocked_linear", mutates_args=())
def blocked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N), any M (csrc/blocked_linear.c)."""
    _check_linear("blocked_linear", x, weight, bias, 1)
    x, weight = x.contiguous(), weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    (m, k), n = x.shape, weight.shape[0]
    y = torch.empty(m, n, dtype=x.dtype)
    b = None if bias is None else bias.data_ptr()
    if library().openblip_blocked_linear(
        x.data_ptr(), weight.data_ptr(), b, y.data_ptr(), m, n, k, torch.get_num_threads()
    ):
        raise MemoryError(f"openblip::blocked_linear: no memory for the packing buffers of ({m}, {k}) x ({n}, {k})")
    return y


@blocked_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    _check_linear("blocked_linear", x, weight, bias, 1)
    return x.new_empty(x.shape[0], weight.shape[0])


# ---- the two products of folded cross-attention, per context c -----------------------------------


@torch.library.custom_op("openblip::context_scores", mutates_args=())
def context_scores(q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """q (C, R, D), tokens (C, N, D) -> q[c] tokens[c]^T (C, R, N) (csrc/small_linear.c, C products)."""
    _check_context("context_scores", q, tokens, tokens.shape[-1], 8)
    q, tokens = q.contiguous(), tokens.contiguous()
    (c, r, d), n = q.shape, tokens.shape[1]
    out = torch.empty(c, r, n, dtype=q.dtype)
    library().openblip_small_linear(
        q.data_ptr(), tokens.data_ptr(), None, out.data_ptr(), c, r, n, d, 1, torch.get_num_threads()
    )
    return out


@context_scores.register_fake
def _(q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    _check_context("context_scores", q, tokens, tokens.shape[-1], 8)
    return q.new_empty(q.shape[0], q.shape[1], tokens.shape[1])


@torch.library.custom_op("openblip::context_mix", mutates_args=())
def context_mix(p: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """p (C, R, N), tokens (C, N, D) -> p[c] tokens[c] (C, R, D) (csrc/folded_attention.c)."""
    _check_context("context_mix", p, tokens, tokens.shape[1], 16)
    p, tokens = p.contiguous(), tokens.contiguous()
    (c, r, n), d = p.shape, tokens.shape[2]
    out = torch.empty(c, r, d, dtype=p.dtype)
    library().openblip_folded_context(
        p.data_ptr(), tokens.data_ptr(), out.data_ptr(), c, r, n, d, torch.get_num_threads()
    )
    return out


@context_mix.register_fake
def _(p: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    _check_context("context_mix", p, tokens, tokens.shape[1], 16)
    return p.new_empty(p.shape[0], p.shape[1], tokens.shape[2])


# ---- the vision encoder's self-attention ----------------------------------------------------------


@torch.library.custom_op("openblip::attention", mutates_args=())
def attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Unmasked softmax(q k^T / sqrt(hd)) v from a fused projection qkv (B, N, 3 D) laid out
    [q; k; v] x heads -> (B, N, D), heads merged (csrc/attention.c)."""
    _check_attention(qkv, heads)
    qkv = qkv.contiguous()
    b, n, d3 = qkv.shape
    d = d3 // 3
    hd = d // heads
    out = torch.empty(b, n, d, dtype=qkv.dtype)
    if library().openblip_attention(qkv.data_ptr(), out.data_ptr(), b, n, heads, hd, hd**-0.5, torch.get_num_threads()):
        raise MemoryError(f"openblip::attention: no memory for the buffers of {n} tokens")
    return out


@attention.register_fake
def _(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    _check_attention(qkv, heads)
    return qkv.new_empty(qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3)
