"""The BERT-style text transformer of BLIP's "multimodal mixture of encoder-decoder" (MED).

One class, three uses (paper section 3.1):
  unimodal encoder      TextTransformer(causal=False), called without `context`
  image-grounded encoder TextTransformer(causal=False), called with image tokens as `context`
  image-grounded decoder TextDecoder = TextTransformer(causal=True) + LMHead
Post-LN blocks (BERT): x = LN(x + sublayer(x)); absolute positions; no token-type embeddings.
For pre-training the decoder shares every weight but self-attention with the encoder; that
sharing is built here explicitly (`share_with=`), module by module.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from openblip.backends import cpu
from openblip.config import TextConfig
from openblip.model.cache import ContextTokens, CrossKV, FoldedContext, KVCache
from openblip.model.layers import (
    MASK_VALUE,
    Linear,
    Mlp,
    context_mix,
    context_scores,
    linear,
    merge_heads,
    padding_bias,
    sdpa,
    split_heads,
)


class Embeddings(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.width, padding_idx=cfg.pad_token_id)
        self.position = nn.Embedding(cfg.max_positions, cfg.width)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, start: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """positions: (L,) device tensor of positions (a static cache's step), else start..start+L."""
        length = ids.shape[1]
        if start + length > self.position.num_embeddings:
            raise ValueError(f"text of {start + length} tokens exceeds the {self.position.num_embeddings} positions")
        pos = torch.arange(start, start + length, device=ids.device) if positions is None else positions
        return self.dropout(self.norm(self.word(ids) + self.position(pos)))


class ResidualAttention(nn.Module):
    """Multi-head attention with BERT's post-LN residual: LN(x + out(attn(x, context))).

    Self-attention when `context_width` is None, else cross-attention whose keys/values are
    projected from `context_width` (the vision width for the grounded encoder/decoder).
    """

    cpu_kernels: cpu.CpuKernels = cpu.OFF  # the model's choice (Blip.use_cpu_kernels), for attend_folded

    def __init__(self, cfg: TextConfig, context_width: int | None = None) -> None:
        super().__init__()
        kv_in = cfg.width if context_width is None else context_width
        self.heads = cfg.heads
        self.query = Linear(cfg.width, cfg.width)
        self.key = Linear(kv_in, cfg.width)
        self.value = Linear(kv_in, cfg.width)
        self.out = Linear(cfg.width, cfg.width)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.dropout = cfg.dropout

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_heads(self.key(context), self.heads), split_heads(self.value(context), self.heads)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        causal: bool = False,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x (B, L, D). kv: precomputed context keys/values (Bc, H, N, hd) with B = Bc * G; the G
        rows of one context attend to it together by folding them into the query length, so
        beams and return sequences never copy the image keys/values."""
        p = self.dropout if self.training else 0.0
        q = split_heads(self.query(x), self.heads)  # (B, H, L, hd)
        if kv is None:  # self-attention
            k, v = split_heads(self.key(x), self.heads), split_heads(self.value(x), self.heads)
            if cache is not None:
                k, v = cache.write(layer, k, v)
            # A fresh causal sequence (no past) uses SDPA's built-in causal mask.
            out = sdpa(q, k, v, bias, p, causal and bias is None and k.shape[2] == q.shape[2])
        else:
            k, v = kv
            b, h, length, hd = q.shape
            group = b // k.shape[0]
            q = q.reshape(k.shape[0], group, h, length, hd).transpose(1, 2).reshape(k.shape[0], h, -1, hd)
            out = sdpa(q, k, v, bias, p)  # (Bc, H, G*L, hd)
            out = out.reshape(k.shape[0], h, group, length, hd).transpose(1, 2).reshape(b, h, length, hd)
        y = F.dropout(self.out(merge_heads(out)), p, self.training)
        return self.norm(x + y)

    def attend_folded(self, x: torch.Tensor, tokens: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Cross-attention to the context tokens (Bc, N, Dc) themselves, the key and value
        projections folded into the queries and the outputs (inference only; same function as
        `forward` with kv=project_kv(tokens), up to float summation order).

        Per head h: q.(Wk t + bk) = (Wk^T q).t + q.bk, whose last term is one constant per query
        and cancels in the softmax; sum_j p_j (Wv t_j + bv) = Wv (sum_j p_j t_j) + bv, as the p_j
        sum to 1. It costs ~2 H N Dc per query instead of 2 N Dc D per context for the keys and
        values: cheaper for a few queries per context (greedy decoding), and the tokens, shared
        by every layer, stay in cache where each layer's keys/values would stream from memory.
        """
        b, length, d = x.shape
        bc, n, dc = tokens.shape
        h = self.heads
        hd = d // h
        rows = b // bc * length  # queries per context
        q = self.query(x) * hd**-0.5
        q = q.view(bc, rows, h, hd).permute(2, 0, 1, 3).reshape(h, bc * rows, hd)
        qk = context_mix(q, self.key.weight.view(h, hd, dc), self.cpu_kernels)  # (H, Bc*rows, Dc)
        qk = qk.view(h, bc, rows, dc).transpose(0, 1).reshape(bc, h * rows, dc)
        scores = context_scores(qk, tokens, self.cpu_kernels)  # (Bc, H*rows, N)
        if bias is not None:
            scores = scores + bias.view(bc, 1, n)
        ctx = context_mix(scores.softmax(-1), tokens, self.cpu_kernels)  # (Bc, H*rows, Dc)
        ctx = ctx.view(bc, h, rows, dc).transpose(0, 1).reshape(h, bc * rows, dc)
        out = context_scores(ctx, self.value.weight.view(h, hd, dc), self.cpu_kernels) + self.value.bias.view(h, 1, hd)
        out = out.view(h, bc, rows, hd).permute(1, 2, 0, 3).reshape(b, length, d)
        return self.norm(x + self.out(out))


class FeedForward(nn.Module):
    """BERT intermediate + output: LN(x + fc2(gelu(fc1(x))))."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.mlp = Mlp(cfg.width, cfg.mlp_dim)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + F.dropout(self.mlp(x), self.dropout, self.training))


class TextLayer(nn.Module):
    self_attn: ResidualAttention
    cross_attn: ResidualAttention | None
    ffn: FeedForward

    def __init__(self, self_attn: ResidualAttention, cross_attn: ResidualAttention | None, ffn: FeedForward) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.cross_attn = cross_attn
        self.ffn = ffn


class TextTransformer(nn.Module):
    """ids (B, L) -> hidden states (B, L, width).

    causal: a decoder (each token sees itself and earlier tokens); otherwise bidirectional.
    context_width: width of the tokens cross-attention reads (None: no cross-attention).
    share_with: build the layers around this transformer's embeddings, cross-attention and
    feed-forward modules (the same objects, so they stay shared through training); only the
    self-attention is new. This is BLIP's pre-training encoder/decoder arrangement.
    """

    cpu_kernels: cpu.CpuKernels = cpu.OFF  # the model's choice (Blip.use_cpu_kernels), for folding

    def __init__(
        self,
        cfg: TextConfig,
        *,
        causal: bool,
        context_width: int | None,
        share_with: TextTransformer | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.causal = causal
        self.grad_checkpointing = False
        if share_with is None:
            self.embeddings = Embeddings(cfg)
            self.layers = nn.ModuleList(
                TextLayer(
                    ResidualAttention(cfg),
                    None if context_width is None else ResidualAttention(cfg, context_width),
                    FeedForward(cfg),
                )
                for _ in range(cfg.depth)
            )
        else:
            if share_with.cfg != cfg:
                raise ValueError("a shared text transformer must have the same config")
            self.embeddings = share_with.embeddings
            self.layers = nn.ModuleList(
                TextLayer(ResidualAttention(cfg), shared.cross_attn, shared.ffn) for shared in share_with.blocks
            )

    @property
    def blocks(self) -> list[TextLayer]:
        return cast(list[TextLayer], list(self.layers))

    @property
    def has_cross_attention(self) -> bool:
        return self.blocks[0].cross_attn is not None

    def cross_kv(self, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> CrossKV:
        """Project context tokens (Bc, N, Dc) to every layer's cross-attention keys/values."""
        if not self.has_cross_attention:
            raise ValueError("this text transformer has no cross-attention")
        ks, vs = [], []
        for layer in self.blocks:
            assert layer.cross_attn is not None
            k, v = layer.cross_attn.project_kv(context)
            ks.append(k)
            vs.append(v)
        bias = None if context_mask is None else padding_bias(context_mask, context.dtype)
        return CrossKV(ks, vs, bias)

    def folding_pays(self, queries: int, context: torch.Tensor) -> bool:
        """Whether cross-attention should read `context` (Bc, N, Dc) through folded projections
        (FoldedContext, `ResidualAttention.attend_folded`) rather than project its keys/values.
        The one place this is chosen: only where the model's CPU kernels take folding
        (backends/cpu `folds`: their products, fp32 CPU inference; with torch's batched products
        it was measured not to pay), and when it costs less. Per context and layer the
        keys/values cost 2 N Dc D multiply-adds; folding costs (H Dc - D) N more per query than
        attending to them. So fold when queries per context (times the decoding steps that reuse
        the keys/values) < Dc D / (H Dc - D): ~70 for BLIP (an ITM text, greedy or 3 beams over
        20 tokens; not 5 beams, not retrieval's re-rank of many texts per image)."""
        if self.training or not cpu.folds(self.cpu_kernels, context):
            return False
        dc = context.shape[-1]
        extra = self.cfg.heads * dc - self.cfg.width
        return extra <= 0 or queries * extra < dc * self.cfg.width

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        context: torch.Tensor | CrossKV | FoldedContext | None = None,
        context_mask: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """
        ids (B, L); mask (B, L) 1 = token, 0 = pad (with a cache: (B, cache.length + L));
        context: image tokens (Bc, N, Dc) or precomputed CrossKV, B a multiple of Bc (rows
        grouped per context, as `repeat_interleave`); None runs the unimodal encoder (the
        original's mode='text'), skipping cross-attention.
        """
        start = 0 if cache is None else cache.length
        bias: torch.Tensor | None
        if cache is not None and cache.static:
            if mask is not None:
                raise ValueError("a static cache step takes no padding mask")
            x = self.embeddings(ids, start, cache.positions)
            bias = cache.step_bias(x.dtype)
        else:
            x = self.embeddings(ids, start)
            bias = self._self_bias(mask, ids.shape[1], start, x.dtype)
        kv: CrossKV | ContextTokens | None
        if context is None:
            kv = None
        elif isinstance(context, (CrossKV, FoldedContext)):
            kv = context
        else:  # folded, or projected layer by layer (_layer refuses a transformer without cross-attention)
            context_bias = None if context_mask is None else padding_bias(context_mask, context.dtype)
            queries = max(ids.shape[0] // max(context.shape[0], 1), 1) * ids.shape[1]
            folded = self.folding_pays(queries, context)
            kv = FoldedContext(context, context_bias) if folded else ContextTokens(context, context_bias)
        if kv is not None and ids.shape[0] % kv.count:
            raise ValueError(f"{ids.shape[0]} texts cannot be grouped over {kv.count} contexts")
        for i, layer in enumerate(self.blocks):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(self._layer, layer, i, x, bias, kv, cache, use_reentrant=False)
            else:
                x = self._layer(layer, i, x, bias, kv, cache)
        if cache is not None:
            cache.advance(ids.shape[1])
        return x

    def _layer(
        self,
        layer: TextLayer,
        i: int,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        kv: CrossKV | ContextTokens | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        x = layer.self_attn(x, bias, causal=self.causal, cache=cache, layer=i)
        if kv is not None:
            if layer.cross_attn is None:
                raise ValueError("context given to a text transformer without cross-attention")
            if isinstance(kv, FoldedContext):
                x = layer.cross_attn.attend_folded(x, kv.tokens, kv.bias)
            else:
                pair = layer.cross_attn.project_kv(kv.tokens) if isinstance(kv, ContextTokens) else (kv.k[i], kv.v[i])
                x = layer.cross_attn(x, kv.bias, kv=pair)
        return layer.ffn(x)

    def _self_bias(self, mask: torch.Tensor | None, length: int, start: int, dtype: torch.dtype) -> torch.Tensor | None:
        """Additive self-attention bias (B, 1, L, start+L), or None when SDPA needs none."""
        if not self.causal:
            return None if mask is None else padding_bias(mask, dtype)
        padded = mask is not None and not bool(mask.all())
        if not padded and (start == 0 or length == 1):
            return None  # plain causal (is_causal in SDPA) or one new token seeing all the past
        total = start + length
        rows = torch.arange(start, total, device=self.embeddings.word.weight.device)
        keep = rows[:, None] >= torch.arange(total, device=rows.device)[None, :]  # (L, total)
        keep4 = keep[None, None]
        if padded:
            assert mask is not None
            keep4 = keep4 & mask[:, None, None, :total].bool()
        return (~keep4).to(dtype) * MASK_VALUE


class LMHead(nn.Module):
    """BERT prediction head: dense -> GELU -> LN -> (word embeddings)^T + bias (weights tied)."""

    cpu_kernels: cpu.CpuKernels = cpu.OFF  # the model's choice (Blip.use_cpu_kernels)

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.dense = Linear(cfg.width, cfg.width)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.gelu(self.dense(hidden)))
        return linear(h, word_embeddings, self.bias, self.cpu_kernels)


class TextDecoder(nn.Module):
    """Image-grounded causal decoder: TextTransformer(causal=True) + LM head tied to its embeddings."""

    def __init__(self, cfg: TextConfig, *, context_width: int, share_with: TextTransformer | None = None) -> None:
        super().__init__()
        self.transformer = TextTransformer(cfg, causal=True, context_width=context_width, share_with=share_with)
        self.head = LMHead(cfg)

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        context: torch.Tensor | CrossKV | FoldedContext | None = None,
        context_mask: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Next-token logits (B, L, vocab), or (B, vocab) for the last position with last_only."""
        h = self.transformer(ids, mask, context, context_mask, cache=cache)
        if last_only:
            h = h[:, -1]
        return self.head(h, self.transformer.embeddings.word.weight)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        cfg = self.transformer.cfg
        w = self.transformer.embeddings.word.weight
        return KVCache(cfg.depth, batch, cfg.heads, max_len, cfg.width // cfg.heads, w.dtype, w.device)


def lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, per_sequence: bool = False
) -> torch.Tensor:
    """Shifted next-token cross-entropy as the original BertLMHeadModel (med.py).

    logits (B, L, V) predict labels[:, 1:]; label -100 is ignored. Mean over tokens, or, with
    per_sequence, the sum over each sequence's tokens (B,) (used for VQA answer ranking and
    the weighted VQA loss).
    """
    shifted = logits[:, :-1].float()
    targets = labels[:, 1:]
    loss = F.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        label_smoothing=label_smoothing,
        reduction="none" if per_sequence else "mean",
    )
    if per_sequence:
        return loss.view(targets.shape).sum(1)
    return loss
