"""One decoding step, optionally captured in a CUDA graph and replayed.

At large batch on a GPU a decoding step is a few milliseconds of GPU work behind some 200
kernel launches issued from Python; replaying a captured graph issues them at once. The
captured step needs fixed shapes and addresses: a static KV cache (`KVCache.make_static`),
precomputed cross-attention keys/values and fixed input/output buffers. Anywhere else (CPU,
MPS, or if capture fails) the same fixed-shape step runs eagerly, which is also how it is tested.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from openblip.model.cache import CrossKV, FoldedContext, KVCache
from openblip.model.text import TextDecoder

log = logging.getLogger(__name__)

Step = Callable[[torch.Tensor], torch.Tensor]  # (rows, 1) ids -> (rows, vocab) next-token logits


def decode_step(decoder: TextDecoder, kv: CrossKV | FoldedContext, cache: KVCache, graph: bool) -> Step:
    """The step function of a generation loop. With `graph` the cache becomes static (fixed
    shapes from here on) and, on CUDA, the step is a replay of a captured CUDA graph (its logits
    buffer is reused: consume it before the next call)."""

    def eager(ids: torch.Tensor) -> torch.Tensor:
        return decoder(ids, None, kv, cache=cache, last_only=True)

    if graph and not cache.static:
        cache.make_static()
    if not (graph and cache.k.device.type == "cuda"):
        return eager
    try:
        return _GraphedStep(eager, cache)
    except RuntimeError as err:  # capture is unsupported by some op/driver: keep decoding eagerly
        log.warning("CUDA graph capture of the decoding step failed (%s); decoding eagerly", err)
        return eager


class _GraphedStep:
    def __init__(self, eager: Step, cache: KVCache) -> None:
        assert cache.positions is not None
        length = cache.length
        rows = cache.k.shape[1]
        self.cache = cache
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=cache.k.device)
        positions = cache.positions

        def rewind() -> None:  # every warm-up/capture call writes slot `length`, never past it
            cache.length = length
            positions.fill_(length)

        try:
            # Warm up on a side stream (as torch.cuda.graphs requires), then capture. These calls
            # write keys/values into slot `length`, which the first real step overwrites.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    rewind()
                    eager(self.ids)
            torch.cuda.current_stream().wait_stream(side)
            rewind()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = eager(self.ids)
        finally:
            rewind()  # the replays start from here

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(ids)
        self.graph.replay()  # advances cache.positions on the device (captured in the graph)
        self.cache.length += 1
        return self.logits
