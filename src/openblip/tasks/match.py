"""Image-text matching: ITM probability of match and ITC cosine for every (image, text) pair.

ITM is the image-grounded encoder with [ENC] first (as the original retrieval evaluation and
LAVIS; the BLIP repo's blip_itm.py demo and transformers keep [CLS]), softmax(logits)[:, 1].
ITC is the plain cosine of the projected features, no temperature (original
`BLIP_ITM(match_head='itc')`). Texts are cleaned with pre_caption(text, 30) by default, as the
retrieval checkpoints saw them in training and evaluation, and truncated to 35 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from openblip.model.blip import Blip
from openblip.tasks.inputs import (
    RETRIEVAL_MAX_TOKENS,
    check_text,
    clean_texts,
    encode_images,
    require_heads,
    token_limit,
    tokenize,
)
from openblip.tokenizer import Tokenizer

_ITM_ROWS = 512  # (image, text) rows through the grounded encoder at once


@dataclass
class MatchScores:
    itm: torch.Tensor  # (B, T) probability that image b and text t match
    itc: torch.Tensor  # (B, T) cosine similarity of the ITC features
    itm_logit: torch.Tensor  # (B, T) raw match logit (index 1), used by retrieval re-ranking


def itm_match_logits(model: Blip, ids: torch.Tensor, mask: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
    """ITM logits (B, T, 2) of every image (B, 1+N, Dv) with every text ids (T, L).

    Texts are grouped over images (B*T rows, rows b*T..b*T+T-1 read image b), so image tokens
    are never repeated and the cross-attention keys/values are computed once per image."""
    require_heads(model, "image-text matching")
    assert model.text_encoder is not None
    b, t = image_tokens.shape[0], ids.shape[0]
    kv = model.text_encoder.cross_kv(image_tokens)
    per = max(1, _ITM_ROWS // max(t, 1))  # images per chunk
    out = []
    for lo in range(0, b, per):
        hi = min(b, lo + per)
        sub = kv.select(torch.arange(lo, hi, device=image_tokens.device))
        rows_ids = ids.repeat(hi - lo, 1)
        rows_mask = mask.repeat(hi - lo, 1)
        out.append(model.itm_logits(rows_ids, rows_mask, sub).float().view(hi - lo, t, 2))
    return torch.cat(out)


@torch.inference_mode()
def match_images_texts(
    model: Blip,
    tokenizer: Tokenizer,
    pixels: torch.Tensor,
    texts: Sequence[str],
    *,
    clean: bool = True,
    max_tokens: int = RETRIEVAL_MAX_TOKENS,
) -> MatchScores:
    """ITM and ITC scores of every image of pixels (B, 3, S, S) with every text: (B, T) each.
    A text that is empty after cleaning is a ValueError naming it (inputs.check_text)."""
    require_heads(model, "image-text matching")
    if not texts:
        raise ValueError("no texts to match")
    clean_texts(texts, clean)  # type checks first
    cleaned = [check_text(t, i, clean) for i, t in enumerate(texts)]
    ids, mask = tokenize(tokenizer, cleaned, token_limit(model, max_tokens), model.device)
    if pixels.shape[0] == 0:
        empty = torch.zeros(0, len(texts))
        return MatchScores(empty, empty, empty)
    tokens = encode_images(model, pixels)  # (B, 1+N, Dv)
    itc = model.itc_similarity(model.image_embed(tokens), model.text_embed(ids, mask)).float()
    logits = itm_match_logits(model, ids, mask, tokens)  # (B, T, 2)
    return MatchScores(logits.softmax(-1)[..., 1].cpu(), itc.cpu(), logits[..., 1].cpu())


@dataclass
class PairScores:
    itm: torch.Tensor  # (B,) probability that image b matches text b
    image_embeds: torch.Tensor  # (B, E) ITC image features, float32 on the CPU


@torch.inference_mode()
def match_pairs(
    model: Blip, tokenizer: Tokenizer, pixels: torch.Tensor, texts: Sequence[str], *, clean: bool = True
) -> PairScores:
    """ITM probability of each (image b, text b) pair, and the images' ITC features: scoring a
    model's own outputs (a caption against its image) needs the B diagonal pairs, not the B×B
    grid of match_images_texts. An empty text is a ValueError naming it."""
    require_heads(model, "image-text matching")
    if len(texts) != pixels.shape[0]:
        raise ValueError(f"{len(texts)} texts for {pixels.shape[0]} images")
    if pixels.shape[0] == 0:
        return PairScores(torch.zeros(0), torch.zeros(0, model.cfg.embed_dim))
    clean_texts(texts, clean)
    cleaned = [check_text(t, i, clean) for i, t in enumerate(texts)]
    ids, mask = tokenize(tokenizer, cleaned, token_limit(model, RETRIEVAL_MAX_TOKENS), model.device)
    tokens = encode_images(model, pixels)  # (B, 1+N, Dv)
    logits = model.itm_logits(ids, mask, tokens).float()  # (B, 2): row b reads image b
    embeds = torch.nn.functional.normalize(model.image_embed(tokens).float(), dim=-1).cpu()
    return PairScores(logits.softmax(-1)[:, 1].cpu(), embeds)
