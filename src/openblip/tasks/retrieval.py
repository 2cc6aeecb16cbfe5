"""Retrieval over an EmbeddingIndex: ITC top-k, then ITM re-ranking of the best candidates.

As the original evaluation (`train_retrieval.evaluation`): candidates are ranked by the ITC
cosine; the top `rerank` are re-scored with the image-grounded encoder ([ENC] first) and
ranked by `itm_logit[match] + cosine` (the raw logit, not a probability). Candidates past
`rerank` keep their ITC order below the re-ranked ones (the original gives them -100).
Re-ranking images needs their tokens, which the index does not store: they are recomputed
from the stored paths through `load_pixels` (an image that cannot be read any more is left
out of the re-ranked results with a warning).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from openblip.model.blip import Blip
from openblip.tasks.index import EmbeddingIndex, IndexEntry, IndexKind, Neighbors, RetrievalIndexError
from openblip.tasks.inputs import (
    RETRIEVAL_MAX_TOKENS,
    check_text,
    clean_texts,
    embed_texts,
    encode_images,
    require_heads,
    token_limit,
    tokenize,
    unit_float32,
)
from openblip.tasks.match import itm_match_logits
from openblip.tokenizer import Tokenizer

log = logging.getLogger(__name__)

PixelLoader = Callable[[str], torch.Tensor]  # stored image path -> pixels (3, S, S); raises when unreadable
_TOKEN_CACHE = 256  # image-token sets kept between queries of one search call


@dataclass(frozen=True)
class Hit:
    row: int
    entry: IndexEntry
    score: float  # itm_logit + itc when re-ranked, else itc
    itc: float  # cosine of the ITC features
    itm: float | None  # ITM probability of match, when re-ranked


@dataclass(frozen=True)
class SearchOptions:
    k: int = 10  # results per query
    rerank: int = 0  # ITC candidates re-ranked with ITM (0: ITC only)
    use_faiss: bool | None = None  # None: FAISS above the index's size threshold
    nlist: int = 0  # > 0: approximate IVF search with this many lists
    batch_size: int = 32  # images through the ViT at once when re-ranking

    def __post_init__(self) -> None:
        if self.k < 1 or self.rerank < 0 or self.batch_size < 1:
            raise ValueError("k and batch_size must be >= 1, rerank >= 0")


def _candidates(nb: Neighbors, q: int) -> list[tuple[int, float]]:
    return [(int(r), float(s)) for r, s in zip(nb.rows[q], nb.scores[q]) if int(r) >= 0]


def _combine(
    index: EmbeddingIndex,
    cands: list[tuple[int, float]],
    reranked: list[tuple[int, float, torch.Tensor]],
    k: int,
    rerank: int,
) -> list[Hit]:
    """Re-ranked candidates (row, itc, itm logits (2,)) first, by itm_logit + itc; then the
    candidates past `rerank` in ITC order."""
    entries = index.entries
    hits = [
        Hit(row, entries[row], float(logits[1]) + itc, itc, float(logits.softmax(-1)[1]))
        for row, itc, logits in reranked
    ]
    hits.sort(key=lambda h: -h.score)
    hits += [Hit(row, entries[row], itc, itc, None) for row, itc in cands[rerank:]]
    return hits[:k]


@torch.inference_mode()
def search_images(
    model: Blip,
    tokenizer: Tokenizer,
    index: EmbeddingIndex,
    texts: Sequence[str],
    load_pixels: PixelLoader,
    options: SearchOptions = SearchOptions(),
) -> list[list[Hit]]:
    """Images of an image index for each text, best first (a text empty after cleaning is a
    ValueError naming it)."""
    require_heads(model, "retrieval")
    if index.kind is not IndexKind.IMAGES:
        raise RetrievalIndexError(f"{index.directory}: an index of {index.kind.value}; searching images needs images")
    clean_texts(texts, index.clean_texts)  # type checks first
    cleaned = [check_text(t, i, index.clean_texts) for i, t in enumerate(texts)]
    queries = embed_texts(model, tokenizer, cleaned, clean=False)
    nb = index.search(queries, max(options.k, options.rerank), use_faiss=options.use_faiss, nlist=options.nlist)
    ids, mask = tokenize(tokenizer, cleaned, token_limit(model, RETRIEVAL_MAX_TOKENS), model.device)
    cache: OrderedDict[int, torch.Tensor] = OrderedDict()
    results = []
    for q in range(len(cleaned)):
        cands = _candidates(nb, q)
        top = cands[: options.rerank]
        tokens = _image_tokens(model, index, [row for row, _ in top], load_pixels, cache, options.batch_size)
        reranked = []
        kept = [(row, itc) for row, itc in top if row in tokens]
        if kept:
            stacked = torch.stack([tokens[row] for row, _ in kept]).to(model.device)  # (R, 1+N, Dv)
            one = slice(q, q + 1)
            logits = itm_match_logits(model, ids[one], mask[one], stacked)[:, 0].cpu()  # (R, 2)
            reranked = [(row, itc, logits[j]) for j, (row, itc) in enumerate(kept)]
        results.append(_combine(index, cands, reranked, options.k, options.rerank))
    return results


def _image_tokens(
    model: Blip,
    index: EmbeddingIndex,
    rows: list[int],
    load_pixels: PixelLoader,
    cache: OrderedDict[int, torch.Tensor],
    batch_size: int,
) -> dict[int, torch.Tensor]:
    """Image tokens of the given index rows (those that load), via a small LRU cache."""
    missing = [r for r in rows if r not in cache]
    loaded: list[tuple[int, torch.Tensor]] = []
    for r in missing:
        path = index.entries[r].path
        assert path is not None
        try:
            loaded.append((r, load_pixels(path)))
        except (OSError, ValueError) as e:
            log.warning("re-ranking without %s: %s", path, e)
    for lo in range(0, len(loaded), batch_size):
        chunk = loaded[lo : lo + batch_size]
        tokens = encode_images(model, torch.stack([p for _, p in chunk]))
        for (r, _), t in zip(chunk, tokens):
            cache[r] = t
            if len(cache) > _TOKEN_CACHE:
                cache.popitem(last=False)
    out = {}
    for r in rows:
        if r in cache:
            cache.move_to_end(r)
            out[r] = cache[r]
    return out


@torch.inference_mode()
def search_texts(
    model: Blip,
    tokenizer: Tokenizer,
    index: EmbeddingIndex,
    pixels: torch.Tensor,
    options: SearchOptions = SearchOptions(),
) -> list[list[Hit]]:
    """Texts of a text index for each image of pixels (B, 3, S, S), best first."""
    require_heads(model, "retrieval")
    if index.kind is not IndexKind.TEXTS:
        raise RetrievalIndexError(f"{index.directory}: an index of {index.kind.value}; searching texts needs texts")
    results = []
    limit = token_limit(model, RETRIEVAL_MAX_TOKENS)
    for lo in range(0, pixels.shape[0], options.batch_size):
        tokens = encode_images(model, pixels[lo : lo + options.batch_size])  # (b, 1+N, Dv)
        queries = unit_float32(model.image_embed(tokens))  # as the index's text features
        nb = index.search(queries, max(options.k, options.rerank), use_faiss=options.use_faiss, nlist=options.nlist)
        for q in range(tokens.shape[0]):
            cands = _candidates(nb, q)
            top = cands[: options.rerank]
            reranked = []
            if top:
                texts = [index.entries[row].text or "" for row, _ in top]
                ids, mask = tokenize(tokenizer, clean_texts(texts, index.clean_texts), limit, model.device)
                logits = itm_match_logits(model, ids, mask, tokens[q : q + 1])[0].cpu()  # (R, 2)
                reranked = [(row, itc, logits[j]) for j, (row, itc) in enumerate(top)]
            results.append(_combine(index, cands, reranked, options.k, options.rerank))
    return results
