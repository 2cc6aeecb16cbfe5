"""Beam search over the image-grounded decoder, with the original's or today's transformers' rules.

Each step every running beam is extended by every token; the 2 * num_beams best extensions
(summed log-probabilities) are the step's candidates, enough that num_beams keep running even if
num_beams of them end with [SEP]. Candidates ending with [SEP] among the top num_beams become
finished hypotheses; the best num_beams that do not end keep running. Each input keeps its
num_beams best finished hypotheses. Where the two rule sets (`BeamRules`) differ:

                      ORIGINAL (transformers 4.15)          TRANSFORMERS (today)
  finished score      sum_logprob / len ** lp               sum_logprob / gen ** lp
                      len: tokens before [SEP], [DEC] and   gen: generated tokens, [SEP] included,
                      the prompt included                   prompt excluded
  at max_length       the num_beams running beams finish,   the step's top num_beams candidates
                      len = max_length                      finish, ended or not
  input done when     num_beams finished and the step's     num_beams finished and the best
                      best candidate (ended ones included)  running beam / gen ** lp <= the
                      / (length before the step) ** lp      worst finished
                      <= the worst finished

(sum_logprob includes [SEP]'s log-probability; lp = length_penalty.) Ties between equal scores
may be broken differently from transformers' Python lists.

For speed (same results up to float summation order): cross-attention keys/values are shared
by the beams of a context (never copied), the self-attention cache is preallocated, and
contexts that are done are dropped from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from openblip.model.cache import CrossKV, FoldedContext, compaction_due
from openblip.model.cuda_graph import decode_step
from openblip.model.generation_config import BeamRules, GenerationConfig, GenerationOutput
from openblip.model.processors import NEG_INF, process
from openblip.model.text import TextDecoder

# transformers' beam-search bookkeeping penalty; kept identical so rankings tie-break identically.
BEAM_PENALTY = -1.0e9


@dataclass
class _Beams:
    """Search state per context (B, k, ...), k = num_beams, L = max_length."""

    run_seq: torch.Tensor  # (B, k, L) running sequences
    run_logp: torch.Tensor  # (B, k, L) each token's log-probability
    run_score: torch.Tensor  # (B, k) summed log-probabilities
    fin_seq: torch.Tensor  # (B, k, L) finished hypotheses, best first
    fin_logp: torch.Tensor  # (B, k, L)
    fin_score: torch.Tensor  # (B, k) length-penalised scores
    fin_len: torch.Tensor  # (B, k) tokens, [SEP] included when it ended
    fin_filled: torch.Tensor  # (B, k) slot holds a hypothesis
    searching: torch.Tensor  # (B,) not done yet

    @classmethod
    def start(cls, prompt: torch.Tensor, cfg: GenerationConfig) -> _Beams:
        batch, plen = prompt.shape
        k, device = cfg.num_beams, prompt.device
        seq = torch.full((batch, k, cfg.max_length), cfg.pad_token_id, dtype=torch.long, device=device)
        seq[:, :, :plen] = prompt[:, None]
        score = torch.zeros(batch, k, device=device)
        score[:, 1:] = BEAM_PENALTY  # all beams start identical: only beam 0 may expand at first
        logp = torch.zeros(batch, k, cfg.max_length, device=device)
        return cls(
            run_seq=seq,
            run_logp=logp,
            run_score=score,
            fin_seq=seq.clone(),
            fin_logp=logp.clone(),
            fin_score=torch.full((batch, k), BEAM_PENALTY, device=device),
            fin_len=torch.full((batch, k), plen, dtype=torch.long, device=device),
            fin_filled=torch.zeros(batch, k, dtype=torch.bool, device=device),
            searching=torch.ones(batch, dtype=torch.bool, device=device),
        )


@dataclass
class _Candidates:
    """The step's 2k best extensions per active context, best first."""

    score: torch.Tensor  # (b, 2k) summed log-probabilities
    beam: torch.Tensor  # (b, 2k) the running beam each extends
    token: torch.Tensor  # (b, 2k)
    seq: torch.Tensor  # (b, 2k, L) extended sequences
    logp: torch.Tensor  # (b, 2k, L) their per-token log-probabilities


def _candidates(
    logits: torch.Tensor, st: _Beams, active: torch.Tensor, length: int, cfg: GenerationConfig
) -> _Candidates:
    """logits (b*k, V) of the active contexts' running beams at position `length`."""
    b, k, vocab = active.numel(), cfg.num_beams, logits.shape[-1]
    seq = st.run_seq[active]  # (b, k, L)
    logp = F.log_softmax(logits.float(), -1)
    logp = process(logp, seq[:, :, :length].reshape(b * k, length), cfg).view(b, k * vocab)
    total = (logp.view(b, k, vocab) + st.run_score[active][:, :, None]).view(b, k * vocab)
    score, idx = torch.topk(total, 2 * k)  # (b, 2k), best first
    beam = idx // vocab
    token = idx % vocab
    rows = beam[:, :, None].expand(-1, -1, cfg.max_length)
    top_seq = seq.gather(1, rows).clone()
    top_seq[:, :, length] = token
    top_logp = st.run_logp[active].gather(1, rows).clone()
    top_logp[:, :, length] = logp.gather(1, idx)
    return _Candidates(score, beam, token, top_seq, top_logp)


def _keep_running(st: _Beams, active: torch.Tensor, cand: _Candidates, stops: torch.Tensor, k: int) -> torch.Tensor:
    """The best k candidates that do not stop become the running beams; returns (b, k) the old
    beam each new one extends."""
    keep_score = cand.score + stops.float() * BEAM_PENALTY
    nxt = torch.topk(keep_score, k).indices  # (b, k)
    rows = nxt[:, :, None].expand(-1, -1, cand.seq.shape[2])
    st.run_seq[active] = cand.seq.gather(1, rows)
    st.run_logp[active] = cand.logp.gather(1, rows)
    st.run_score[active] = keep_score.gather(1, nxt)
    return cand.beam.gather(1, nxt)


def _add_finished(
    st: _Beams,
    active: torch.Tensor,
    seq: torch.Tensor,
    logp: torch.Tensor,
    score: torch.Tensor,
    length: int,
    add: torch.Tensor,
) -> None:
    """Merge the hypotheses `add` (b, n) (sequences (b, n, L) of `length` tokens, penalised
    scores (b, n)) of the searching contexts into each context's k best finished ones."""
    k = st.fin_score.shape[1]
    add = add & st.searching[active][:, None]
    m_score = torch.cat([st.fin_score[active], score.masked_fill(~add, NEG_INF)], 1)
    best = torch.topk(m_score, k).indices  # unfilled slots (BEAM_PENALTY) beat what is not added
    rows = best[:, :, None].expand(-1, -1, seq.shape[2])
    st.fin_seq[active] = torch.cat([st.fin_seq[active], seq], 1).gather(1, rows)
    st.fin_logp[active] = torch.cat([st.fin_logp[active], logp], 1).gather(1, rows)
    st.fin_score[active] = m_score.gather(1, best)
    m_len = torch.cat([st.fin_len[active], torch.full_like(score, length, dtype=torch.long)], 1)
    st.fin_len[active] = m_len.gather(1, best)
    st.fin_filled[active] = torch.cat([st.fin_filled[active], add], 1).gather(1, best)


def _step_original(
    st: _Beams, active: torch.Tensor, cand: _Candidates, length: int, cfg: GenerationConfig
) -> torch.Tensor:
    """One step under transformers 4.15's rules (BeamSearchScorer.process, then finalize at the
    last step). `length`: tokens before this step. Returns the running beams' sources."""
    k, lp = cfg.num_beams, cfg.length_penalty
    ended = cand.token == cfg.eos_token_id
    top_k = torch.arange(2 * k, device=ended.device) < k
    # an ending hypothesis is the sequence before [SEP]: `length` tokens
    _add_finished(st, active, cand.seq, cand.logp, cand.score / length**lp, length + 1, ended & top_k[None])
    src = _keep_running(st, active, cand, ended, k)
    # is_done: the best candidate of the step (ended ones included) over the length before it
    worst = st.fin_score[active].min(1).values
    done = st.fin_filled[active].all(1) & (worst >= cand.score[:, 0] / length**lp)
    st.searching[active] &= ~done
    if length + 1 >= cfg.max_length:  # finalize: the running beams join at their full length
        everyone = torch.ones_like(st.run_score[active], dtype=torch.bool)
        score = st.run_score[active] / (length + 1) ** lp
        _add_finished(st, active, st.run_seq[active], st.run_logp[active], score, length + 1, everyone)
    return src


def _step_transformers(
    st: _Beams, active: torch.Tensor, cand: _Candidates, length: int, plen: int, cfg: GenerationConfig
) -> torch.Tensor:
    """One step under today's transformers rules (its vectorised beam search)."""
    k, lp = cfg.num_beams, cfg.length_penalty
    stops = (cand.token == cfg.eos_token_id) | (length + 1 >= cfg.max_length)  # (b, 2k)
    src = _keep_running(st, active, cand, stops, k)
    top_k = torch.arange(2 * k, device=stops.device) < k
    score = cand.score / (length + 1 - plen) ** lp
    _add_finished(st, active, cand.seq, cand.logp, score, length + 1, stops & top_k[None])
    # can the best running beam still beat the worst finished hypothesis at its length?
    best_possible = st.run_score[active][:, :1] / ((length + 1 - plen) ** lp)
    fin_score = st.fin_score[active]
    worst = torch.where(st.fin_filled[active], fin_score.min(1, keepdim=True).values, BEAM_PENALTY)
    st.searching[active] &= (best_possible > worst).any(1)
    return src


def beam_search(
    decoder: TextDecoder, kv: CrossKV | FoldedContext, prompt: torch.Tensor, cfg: GenerationConfig
) -> GenerationOutput:
    """Beam search from prompt (B, P) over contexts kv, under cfg.beam_rules (see BeamRules)."""
    k = cfg.num_beams
    batch, plen = prompt.shape
    device = prompt.device
    st = _Beams.start(prompt, cfg)
    active = torch.arange(batch, device=device)  # contexts still searching
    # Prefill once per context, then give every beam a copy of the prompt cache.
    cache = decoder.new_cache(batch, cfg.max_length)
    logits = decoder(prompt, None, kv, cache=cache, last_only=True).repeat_interleave(k, 0)
    cache.select(torch.arange(batch, device=device).repeat_interleave(k))
    step = decode_step(decoder, kv, cache, cfg.cuda_graph)
    length = plen
    while True:
        b = active.numel()
        cand = _candidates(logits, st, active, length, cfg)
        if cfg.beam_rules is BeamRules.ORIGINAL:
            src = _step_original(st, active, cand, length, cfg)
        else:
            src = _step_transformers(st, active, cand, length, plen, cfg)
        length += 1
        if length >= cfg.max_length or not bool(st.searching.any()):
            break
        # reorder the cache to the surviving beams, then drop contexts that are done
        rows = (torch.arange(b, device=device)[:, None] * k + src).reshape(-1)
        still = st.searching[active]
        if not cache.static and compaction_due(int((~still).sum()), b):
            keep_ctx = still.nonzero().squeeze(1)
            rows = rows.view(b, k)[keep_ctx].reshape(-1)
            kv = kv.select(keep_ctx)
            active = active[keep_ctx]
            step = decode_step(decoder, kv, cache, False)
        cache.select(rows)
        logits = step(st.run_seq[active][:, :, length - 1].reshape(-1, 1))
    return _best(st, cfg)


def _best(st: _Beams, cfg: GenerationConfig) -> GenerationOutput:
    """The num_return_sequences best finished hypotheses of each context, padded after their end."""
    r = cfg.num_return_sequences
    batch = st.fin_seq.shape[0]
    seqs = st.fin_seq[:, :r].reshape(batch * r, cfg.max_length)
    logp = st.fin_logp[:, :r].reshape(batch * r, cfg.max_length)
    lens = st.fin_len[:, :r].reshape(-1)
    beyond = torch.arange(cfg.max_length, device=seqs.device)[None] >= lens[:, None]
    seqs = seqs.masked_fill(beyond, cfg.pad_token_id)
    logp = logp.masked_fill(beyond, 0.0)
    end = int(lens.max())
    return GenerationOutput(seqs[:, :end], st.fin_score[:, :r].reshape(-1), logp[:, :end])
