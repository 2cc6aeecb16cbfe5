"""Text generation from BLIP's image-grounded decoder: greedy, beam search and sampling.

Greedy and beam ids are those of the original (transformers 4.15 `generate` as salesforce/BLIP
called it) by default, and those of today's transformers with
`GenerationConfig(beam_rules=BeamRules.TRANSFORMERS)` (the two differ only in how beam search
scores and stops: model/beam_search.py). Lengths count [DEC] and the prompt; the score processors
are in model/processors.py.

What we do differently, for speed (same results up to float summation order): cross-attention
keys/values are computed once per context and shared by its beams/return sequences (never
copied), or, on the CPU with few sequences per context, never computed: cross-attention reads the
context tokens through folded projections (`fold_context`); the self-attention cache is
preallocated; contexts whose sequences are all finished are dropped from the batch.
Output sequences are padded with `pad_token_id` after [SEP] (transformers pads beam outputs
with the eos id instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from openblip.model.beam_search import beam_search
from openblip.model.cache import CrossKV, FoldedContext, compaction_due
from openblip.model.cuda_graph import decode_step
from openblip.model.generation_config import BeamRules, GenerationConfig, GenerationOutput
from openblip.model.layers import padding_bias
from openblip.model.processors import (
    apply_min_length,
    apply_no_repeat_ngram,
    apply_repetition_penalty,
    process,
    warp_for_sampling,
)
from openblip.model.sampling import SampleStreams
from openblip.model.text import TextDecoder

__all__ = [
    "BeamRules",
    "GenerationConfig",
    "GenerationOutput",
    "apply_min_length",
    "apply_no_repeat_ngram",
    "apply_repetition_penalty",
    "fold_context",
    "generate",
    "process",
    "warp_for_sampling",
]


# ---- entry point ----------------------------------------------------------------------------------
@torch.inference_mode()
def generate(
    decoder: TextDecoder,
    context: torch.Tensor | CrossKV,
    prompt: torch.Tensor,
    cfg: GenerationConfig,
    context_mask: torch.Tensor | None = None,
    sample_keys: Sequence[int] | None = None,
) -> GenerationOutput:
    """Generate continuations of `prompt` for each context.

    context: (B, N, Dc) tokens the decoder cross-attends to (image tokens, or VQA question states),
    or their precomputed CrossKV. prompt: (P,) ids shared by all, or (B, P); it starts with [DEC].
    sample_keys: (B) keys of the contexts' sampling streams (default 0..B-1): with a seed, what a
    context samples depends on the seed, its key and nothing else in the batch.
    Returns B * num_return_sequences sequences, grouped per context.
    """
    kv: CrossKV | FoldedContext
    if isinstance(context, CrossKV):
        kv = context
    elif fold_context(decoder, context, prompt.shape[-1], cfg):
        kv = FoldedContext(context, None if context_mask is None else padding_bias(context_mask, context.dtype))
    else:
        kv = decoder.transformer.cross_kv(context, context_mask)
    batch = kv.count
    if prompt.dim() == 1:
        prompt = prompt[None].expand(batch, -1)
    if prompt.shape[0] != batch:
        raise ValueError(f"{prompt.shape[0]} prompts for {batch} contexts")
    if prompt.shape[1] >= cfg.max_length:
        raise ValueError(f"prompt of {prompt.shape[1]} tokens leaves nothing to generate (max_length {cfg.max_length})")
    positions = decoder.transformer.embeddings.position.num_embeddings
    if cfg.max_length > positions:
        raise ValueError(f"max_length {cfg.max_length} exceeds the decoder's {positions} positions")
    prompt = prompt.to(context.k[0].device if isinstance(context, CrossKV) else context.device)
    keys = range(batch) if sample_keys is None else sample_keys
    if len(keys) != batch:
        raise ValueError(f"{len(keys)} sample keys for {batch} contexts")
    if cfg.num_beams > 1:
        return beam_search(decoder, kv, prompt, cfg)
    return _greedy_or_sample(decoder, kv, prompt, cfg, keys)


def fold_context(decoder: TextDecoder, context: torch.Tensor, prompt_length: int, cfg: GenerationConfig) -> bool:
    """Whether generation reads the context through folded projections (FoldedContext) rather
    than precompute every layer's keys/values once (CrossKV): `TextTransformer.folding_pays` for
    all the queries that would reuse the keys/values (sequences per context x steps). CUDA graphs
    take CrossKV."""
    steps = cfg.max_length - prompt_length
    queries = cfg.num_beams * cfg.num_return_sequences * steps
    return not cfg.cuda_graph and decoder.transformer.folding_pays(queries, context)


def _greedy_or_sample(
    decoder: TextDecoder, kv: CrossKV | FoldedContext, prompt: torch.Tensor, cfg: GenerationConfig, keys: Sequence[int]
) -> GenerationOutput:
    group = cfg.num_return_sequences
    batch = prompt.shape[0]
    rows = batch * group
    device = prompt.device
    streams = None
    if cfg.do_sample:
        seed = cfg.seed if cfg.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        streams = SampleStreams(seed, keys, group, cfg.max_length, device)
    out = torch.full((rows, cfg.max_length), cfg.pad_token_id, dtype=torch.long, device=device)
    out[:, : prompt.shape[1]] = prompt.repeat_interleave(group, 0)
    scores = torch.zeros(rows, device=device)
    token_logp = torch.zeros(rows, cfg.max_length, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    active = torch.arange(rows, device=device)  # rows of `out` still in the batch, grouped per context
    cache = decoder.new_cache(rows, cfg.max_length)
    length = prompt.shape[1]
    logits = decoder(out[:, :length], None, kv, cache=cache, last_only=True)
    step = decode_step(decoder, kv, cache, cfg.cuda_graph)
    while True:
        ids = out[active, :length]
        step_scores = process(logits.float(), ids, cfg)
        if streams is not None:
            token = streams.draw(warp_for_sampling(step_scores, cfg), active, length)
        else:
            token = step_scores.argmax(-1)
        logp = step_scores.log_softmax(-1).gather(1, token[:, None]).squeeze(1)
        live = ~finished[active]
        token = torch.where(live, token, cfg.pad_token_id)
        out[active, length] = token
        logp = torch.where(live, logp, 0.0)
        token_logp[active, length] = logp
        scores[active] += logp
        finished[active] |= token == cfg.eos_token_id
        length += 1
        if length >= cfg.max_length or bool(finished.all()):
            break
        # drop contexts whose every sequence has ended
        if not cache.static:
            ctx_done = finished[active].view(-1, group).all(1)
            if compaction_due(int(ctx_done.sum()), ctx_done.numel()):
                keep_ctx = (~ctx_done).nonzero().squeeze(1)
                keep_rows = (keep_ctx[:, None] * group + torch.arange(group, device=device)).reshape(-1)
                kv = kv.select(keep_ctx)
                cache.select(keep_rows)
                active = active[keep_rows]
                step = decode_step(decoder, kv, cache, False)
        logits = step(out[active, length - 1 : length])
    return GenerationOutput(out[:, :length], scores, token_logp[:, :length])
