"""What the text decoder keeps between steps and what cross-attention reads.

KVCache: preallocated self-attention keys/values of a decoding run (dynamic, or static for
replayed CUDA-graph steps). CrossKV: every layer's cross-attention keys/values of a batch of
contexts, computed once per generation. ContextTokens: context tokens whose keys/values each
layer projects as it runs (a single forward pass: ITM, VQA question encoding, training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from openblip.model.layers import MASK_VALUE


class KVCache:
    """Preallocated self-attention keys/values of every decoder layer.

    k, v: (layers, B, H, max_len, hd). `length` tokens are filled. Rows can be reordered
    (beam search) or dropped (finished sequences) with `select`.

    After `make_static()` every shape is fixed: a step writes at `positions` (a device tensor
    advanced in place) and attends over all `max_len` slots through a mask that hides the ones not
    yet written (exp(-10000) is exactly 0 in fp32, so the result is the same), so that one
    decoding step can be captured in a CUDA graph and replayed. `select` then reorders in place
    and rows can no longer be dropped.
    """

    def __init__(
        self,
        layers: int,
        batch: int,
        heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.k = torch.empty(layers, batch, heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.empty_like(self.k)
        self.length = 0
        self.positions: torch.Tensor | None = None  # (1,) slot of the next token, static caches only

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def static(self) -> bool:
        return self.positions is not None

    def make_static(self) -> None:
        # Masked slots are still read: they must hold finite numbers (0 * NaN is NaN), not
        # whatever torch.empty left there.
        self.k[:, :, :, self.length :].zero_()
        self.v[:, :, :, self.length :].zero_()
        self.positions = torch.tensor([self.length], device=self.k.device)

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder to) the given batch rows."""
        if self.static:
            if rows.numel() != self.k.shape[1]:
                raise ValueError("a static cache keeps its batch size: rows can be reordered, not dropped")
            self.k.copy_(self.k[:, rows])
            self.v.copy_(self.v[:, rows])
            return
        self.k = self.k[:, rows]
        self.v = self.v[:, rows]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, H, L, hd) new keys/values after `length`; return all keys/values so far
        (a static cache returns every slot: `step_bias` masks the unwritten ones)."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, {end} requested")
        if self.positions is not None:
            if k.shape[2] != 1:
                raise ValueError("a static cache takes one token per step")
            self.k[layer].index_copy_(2, self.positions, k)
            self.v[layer].index_copy_(2, self.positions, v)
            return self.k[layer], self.v[layer]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def step_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """(1, 1, 1, max_len) additive bias of a static step: slots after `positions` hidden."""
        assert self.positions is not None
        slots = torch.arange(self.max_len, device=self.k.device)
        return ((slots > self.positions).to(dtype) * MASK_VALUE)[None, None, None]

    def advance(self, n: int) -> None:
        self.length += n
        if self.positions is not None:
            self.positions += n


@dataclass
class CrossKV:
    """Cross-attention keys/values of every layer for one batch of contexts (images or
    questions), computed once and reused at every decoding step and by every beam."""

    k: list[torch.Tensor]  # per layer (Bc, H, N, hd)
    v: list[torch.Tensor]
    bias: torch.Tensor | None  # (Bc, 1, 1, N) additive padding bias of the context, or None

    @property
    def count(self) -> int:
        return self.k[0].shape[0]

    def select(self, rows: torch.Tensor) -> CrossKV:
        bias = None if self.bias is None else self.bias[rows]
        return CrossKV([k[rows] for k in self.k], [v[rows] for v in self.v], bias)


@dataclass
class ContextTokens:
    """Context tokens (Bc, N, Dc) whose keys/values each layer projects as it runs: one layer's
    keys/values alive at a time (a CrossKV holds every layer's: what generation reuses)."""

    tokens: torch.Tensor
    bias: torch.Tensor | None  # (Bc, 1, 1, N) additive padding bias, or None

    @property
    def count(self) -> int:
        return self.tokens.shape[0]


@dataclass
class FoldedContext(ContextTokens):
    """Context tokens that cross-attention reads directly, its key/value projections folded into
    its queries and outputs (`ResidualAttention.attend_folded`): no keys/values are computed.
    Generation on the CPU uses it when few sequences share each context (see generate.py)."""

    def select(self, rows: torch.Tensor) -> FoldedContext:
        return FoldedContext(self.tokens[rows], None if self.bias is None else self.bias[rows])


def compaction_due(done: int, total: int) -> bool:
    """Whether a generation loop should drop its `done` finished contexts (of `total`) from the
    batch now: once enough have accumulated to pay for copying the cache."""
    return done > 0 and (done * 4 >= total or done == total)
