"""Reproducible sampling: one random stream per (context, return sequence).

What a sequence draws depends only on the seed, its context's key (by default its position in
the batch; the API and CLI pass each image's position in the whole input) and the step, never
on which other contexts share the batch or leave it when they finish. So a caption sampled alone
equals the one sampled in any batch, and a batch retried one item at a time gives the same.

Each stream is a torch CPU generator seeded with splitmix64 of (seed, key, index), drawing one
uniform per position up front; a step turns its uniform into a token by inverting the cumulative
distribution (a token of probability p is drawn with probability p, zero-probability tokens never).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(x: int) -> int:
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def stream_seed(seed: int, key: int, index: int) -> int:
    """The 64-bit seed of the stream of return sequence `index` of the context keyed `key`."""
    return _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ (key & _MASK64)) ^ (index & _MASK64))


class SampleStreams:
    """Uniforms (rows, length) for rows = contexts x group, row r = context r // group, return
    sequence r % group (generate's layout)."""

    def __init__(self, seed: int, keys: Sequence[int], group: int, length: int, device: torch.device) -> None:
        uniforms = torch.empty(len(keys) * group, length)
        gen = torch.Generator()
        for c, key in enumerate(keys):
            for g in range(group):
                gen.manual_seed(stream_seed(seed, int(key), g))
                uniforms[c * group + g] = torch.rand(length, generator=gen)
        self.uniforms = uniforms.to(device)

    def draw(self, logits: torch.Tensor, rows: torch.Tensor, position: int) -> torch.Tensor:
        """One token per row of logits (n, V) (already warped: -inf = never), for the given
        rows of the batch at sequence `position`."""
        cdf = logits.softmax(-1, dtype=torch.float64).cumsum(-1)
        target = self.uniforms[rows, position].double() * cdf[:, -1]
        token = torch.searchsorted(cdf, target[:, None], right=True)[:, 0]
        return token.clamp_max(logits.shape[-1] - 1)


def name_key(name: str) -> int:
    """A stream key from a sample's name (a dataset key such as img2dataset's "000010042"), so
    that what a sample draws follows it, not its position: the same captions after a resume,
    with another batch size, worker count or engine. The first 8 bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
