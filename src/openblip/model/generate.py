"""Text generation from BLIP's image-grounded decoder: greedy, beam search and sampling.

Semantics follow the original (HF 4.15 `generate` as BLIP called it) and today's transformers,
so that greedy and beam ids are identical to `transformers` on the same weights:
- `max_length` and `min_length` count every token of the sequence, [DEC] and the prompt included;
- `min_length` only forbids [SEP] (the eos) before that length;
- repetition penalty divides positive scores and multiplies negative ones, over every token of
  the sequence so far (prompt included); in beam search it acts on log-probabilities (as
  transformers applies its processors after log_softmax there), in greedy/sampling on logits;
- beam search keeps 2*num_beams candidates per step, scores finished hypotheses as
  sum_logprob / (generated_length ** length_penalty) and stops a batch item once no running
  beam can beat its worst finished one (transformers' early_stopping=False heuristic).

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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from openblip.model.cache import CrossKV, FoldedContext
from openblip.model.cuda_graph import decode_step
from openblip.model.layers import padding_bias
from openblip.model.sampling import SampleStreams
from openblip.model.text import TextDecoder

NEG_INF = float("-inf")
# transformers' beam-search bookkeeping penalty; kept identical so rankings tie-break identically.
BEAM_PENALTY = -1.0e9


@dataclass(frozen=True)
class GenerationConfig:
    max_length: int = 20  # total tokens, [DEC] and prompt included (original semantics)
    min_length: int = 0  # [SEP] is forbidden while the sequence is shorter than this
    num_beams: int = 1
    do_sample: bool = False
    top_k: int = 50  # sampling only; 0 disables (transformers' default 50 was active in BLIP's nucleus)
    top_p: float = 1.0  # sampling only; BLIP's nucleus captioning uses 0.9
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0  # beam search only
    num_return_sequences: int = 1
    seed: int | None = None  # sampling only (model/sampling.py: one stream per sequence)
    eos_token_id: int = 102
    pad_token_id: int = 0
    # Fixed-shape decoding steps, captured once per call in a CUDA graph and replayed (CUDA only;
    # elsewhere the fixed-shape step runs eagerly). Finished contexts then stay in the batch.
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise ValueError("num_beams and num_return_sequences must be >= 1")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam search with sampling is not supported; choose one")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError("greedy decoding returns one sequence; use beams or sampling for more")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) > num_beams ({self.num_beams})")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.top_k < 0 or self.no_repeat_ngram_size < 0 or self.min_length < 0:
            raise ValueError("top_k, no_repeat_ngram_size and min_length must be >= 0")


@dataclass
class GenerationOutput:
    sequences: torch.Tensor  # (B * num_return_sequences, L): [DEC], prompt, generated ids, pads
    scores: torch.Tensor  # (B * num_return_sequences,) beam score, or summed log-prob


# ---- score processors (pure functions over (rows, V) scores and (rows, t) ids) -------------------
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
        return _beam_search(decoder, kv, prompt, cfg)
    return _greedy_or_sample(decoder, kv, prompt, cfg, keys)


def fold_context(decoder: TextDecoder, context: torch.Tensor, prompt_length: int, cfg: GenerationConfig) -> bool:
    """Whether generation reads the context through folded projections (FoldedContext) rather
    than precompute every layer's keys/values once (CrossKV): `TextTransformer.folding_pays` for
    all the queries that would reuse the keys/values (sequences per context x steps). CUDA graphs
    take CrossKV."""
    steps = cfg.max_length - prompt_length
    queries = cfg.num_beams * cfg.num_return_sequences * steps
    return not cfg.cuda_graph and decoder.transformer.folding_pays(queries, context)


def _compact_due(done: int, total: int) -> bool:
    """Drop finished contexts once enough have accumulated to pay for the cache copy."""
    return done > 0 and (done * 4 >= total or done == total)


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
        scores[active] += torch.where(live, logp, 0.0)
        finished[active] |= token == cfg.eos_token_id
        length += 1
        if length >= cfg.max_length or bool(finished.all()):
            break
        # drop contexts whose every sequence has ended
        if not cache.static:
            ctx_done = finished[active].view(-1, group).all(1)
            if _compact_due(int(ctx_done.sum()), ctx_done.numel()):
                keep_ctx = (~ctx_done).nonzero().squeeze(1)
                keep_rows = (keep_ctx[:, None] * group + torch.arange(group, device=device)).reshape(-1)
                kv = kv.select(keep_ctx)
                cache.select(keep_rows)
                active = active[keep_rows]
                step = decode_step(decoder, kv, cache, False)
        logits = step(out[active, length - 1 : length])
    return GenerationOutput(out[:, :length], scores)


def _beam_search(
    decoder: TextDecoder, kv: CrossKV | FoldedContext, prompt: torch.Tensor, cfg: GenerationConfig
) -> GenerationOutput:
    k = cfg.num_beams
    batch, plen = prompt.shape
    device = prompt.device
    vocab = decoder.head.bias.shape[0]
    cand = 2 * k  # candidates kept per step: enough that k survive even if k end with eos
    top_k_mask = torch.arange(cand, device=device) < k
    # Running state, per context (B, k, ...): sequences, accumulated log-probs.
    run_seq = torch.full((batch, k, cfg.max_length), cfg.pad_token_id, dtype=torch.long, device=device)
    run_seq[:, :, :plen] = prompt[:, None]
    run_score = torch.zeros(batch, k, device=device)
    run_score[:, 1:] = BEAM_PENALTY  # all beams start identical: only beam 0 may expand at first
    # Finished hypotheses (B, k): sequences, length-penalised scores, lengths, filled flags.
    fin_seq = run_seq.clone()
    fin_score = torch.full((batch, k), BEAM_PENALTY, device=device)
    fin_len = torch.full((batch, k), plen, dtype=torch.long, device=device)
    fin_filled = torch.zeros(batch, k, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, dtype=torch.bool, device=device)  # early-stop heuristic unsatisfied
    active = torch.arange(batch, device=device)  # contexts still searching
    # Prefill once per context, then give every beam a copy of the prompt cache.
    cache = decoder.new_cache(batch, cfg.max_length)
    logits = decoder(prompt, None, kv, cache=cache, last_only=True)
    logits = logits.repeat_interleave(k, 0)
    cache.select(torch.arange(batch, device=device).repeat_interleave(k))
    step = decode_step(decoder, kv, cache, cfg.cuda_graph)
    length = plen
    while True:
        b = active.numel()
        seq = run_seq[active]  # (b, k, L)
        logp = F.log_softmax(logits.float(), -1)
        logp = process(logp, seq[:, :, :length].reshape(b * k, length), cfg)
        total = (logp.view(b, k, vocab) + run_score[active][:, :, None]).view(b, k * vocab)
        top_score, top_idx = torch.topk(total, cand)  # (b, 2k)
        beam_idx = top_idx // vocab
        token = top_idx % vocab
        top_seq = seq.gather(1, beam_idx[:, :, None].expand(-1, -1, cfg.max_length)).clone()
        top_seq[:, :, length] = token
        hits = (token == cfg.eos_token_id) | (length + 1 >= cfg.max_length)  # (b, 2k)
        # next running beams: best k candidates that did not stop
        keep_score = top_score + hits.float() * BEAM_PENALTY
        nxt = torch.topk(keep_score, k).indices  # (b, k)
        new_run_seq = top_seq.gather(1, nxt[:, :, None].expand(-1, -1, cfg.max_length))
        new_run_score = keep_score.gather(1, nxt)
        src_beam = beam_idx.gather(1, nxt)  # (b, k) which old beam each new beam extends
        # finished hypotheses: merge the stopping candidates among the top k into the best k
        just_done = hits & top_k_mask[None]
        done_score = top_score / ((length + 1 - plen) ** cfg.length_penalty)
        done_score = done_score + (~improvable[active]).float()[:, None] * BEAM_PENALTY
        done_score = done_score + (~just_done).float() * BEAM_PENALTY
        m_seq = torch.cat([fin_seq[active], top_seq], 1)
        m_score = torch.cat([fin_score[active], done_score], 1)
        m_len = torch.cat([fin_len[active], torch.full_like(top_score, length + 1, dtype=torch.long)], 1)
        m_filled = torch.cat([fin_filled[active], just_done], 1)
        best = torch.topk(m_score, k).indices
        fin_seq[active] = m_seq.gather(1, best[:, :, None].expand(-1, -1, cfg.max_length))
        fin_score[active] = m_score.gather(1, best)
        fin_len[active] = m_len.gather(1, best)
        fin_filled[active] = m_filled.gather(1, best)
        run_seq[active] = new_run_seq
        run_score[active] = new_run_score
        length += 1
        # early-stop heuristic (transformers, early_stopping=False): can the best running beam
        # still beat the worst finished hypothesis at the current length?
        best_possible = new_run_score[:, :1] / ((length - plen) ** cfg.length_penalty)
        worst = torch.where(fin_filled[active], fin_score[active].min(1, keepdim=True).values, BEAM_PENALTY)
        improvable[active] &= (best_possible > worst).any(1)
        if length >= cfg.max_length or bool(hits.all()) or not bool(improvable.any()):
            break
        # reorder the cache to the surviving beams, then drop contexts that are done
        rows = (torch.arange(b, device=device)[:, None] * k + src_beam).reshape(-1)
        still = improvable[active]
        if not cache.static and _compact_due(int((~still).sum()), b):
            keep_ctx = still.nonzero().squeeze(1)
            rows = rows.view(b, k)[keep_ctx].reshape(-1)
            kv = kv.select(keep_ctx)
            active = active[keep_ctx]
            step = decode_step(decoder, kv, cache, False)
        cache.select(rows)
        step_ids = run_seq[active][:, :, length - 1].reshape(-1, 1)
        logits = step(step_ids)
    r = cfg.num_return_sequences
    seqs = fin_seq[:, :r].reshape(batch * r, cfg.max_length)
    lens = fin_len[:, :r].reshape(-1)
    pos = torch.arange(cfg.max_length, device=device)
    seqs = seqs.masked_fill(pos[None] >= lens[:, None], cfg.pad_token_id)
    return GenerationOutput(seqs[:, : int(lens.max())], fin_score[:, :r].reshape(-1))
