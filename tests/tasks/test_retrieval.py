from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from openblip.image import load_image, preprocess
from openblip.tasks.index import (
    EmbeddingIndex,
    IndexEntry,
    IndexKind,
    ModelIdentity,
    RetrievalIndexError,
    model_fingerprint,
)
from openblip.tasks.inputs import embed_images, embed_texts
from openblip.tasks.match import match_images_texts
from openblip.tasks.retrieval import SearchOptions, search_images, search_texts

TEXTS = ["a dog", "two red cars", "a tree in the snow", "a cat sleeping"]


def _load(path: str) -> torch.Tensor:
    return preprocess([load_image(path)], 64)[0]


@pytest.fixture
def gallery(tmp_path, full_model):
    paths = []
    for i in range(5):
        arr = np.random.default_rng(i).integers(0, 255, (48, 40, 3), dtype=np.uint8)
        p = tmp_path / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    pixels = torch.stack([_load(p) for p in paths])
    ident = ModelIdentity("tiny", model_fingerprint(full_model), 64)
    index = EmbeddingIndex.create(tmp_path / "idx", IndexKind.IMAGES, ident, full_model.cfg.embed_dim)
    index.add([IndexEntry(p, path=p) for p in paths], embed_images(full_model, pixels))
    return index, paths, pixels


def test_itc_only_ranking(full_model, tokenizer, gallery) -> None:
    index, paths, pixels = gallery
    hits = search_images(full_model, tokenizer, index, TEXTS, _load, SearchOptions(k=3))
    itc = match_images_texts(full_model, tokenizer, pixels, TEXTS).itc  # (images, texts)
    for t, row in enumerate(hits):
        assert [h.row for h in row] == itc[:, t].topk(3).indices.tolist()
        for h in row:
            assert h.itm is None and h.score == h.itc == pytest.approx(itc[h.row, t].item(), abs=1e-5)
            assert h.entry.path == paths[h.row]


def test_itm_rerank_scores(full_model, tokenizer, gallery) -> None:
    index, _paths, pixels = gallery
    hits = search_images(full_model, tokenizer, index, TEXTS, _load, SearchOptions(k=5, rerank=3))
    s = match_images_texts(full_model, tokenizer, pixels, TEXTS)
    changed = False
    for t, row in enumerate(hits):
        top3 = set(s.itc[:, t].topk(3).indices.tolist())
        assert {h.row for h in row[:3]} == top3  # the re-ranked come first
        for h in row[:3]:
            assert h.score == pytest.approx(s.itm_logit[h.row, t].item() + s.itc[h.row, t].item(), abs=1e-4)
            assert h.itm == pytest.approx(s.itm[h.row, t].item(), abs=1e-5)
        assert [h.score for h in row[:3]] == sorted((h.score for h in row[:3]), reverse=True)
        assert all(h.itm is None for h in row[3:])
        changed |= [h.row for h in row[:3]] != s.itc[:, t].topk(3).indices.tolist()
    assert changed, "ITM re-ranking should reorder some candidates"


def test_unreadable_image_is_left_out_of_reranking(full_model, tokenizer, gallery, caplog) -> None:
    index, _paths, _ = gallery
    first = search_images(full_model, tokenizer, index, TEXTS[:1], _load, SearchOptions(k=5, rerank=5))[0]
    gone = first[0].entry.path
    assert gone is not None
    import os

    os.remove(gone)
    with caplog.at_level(logging.WARNING):
        again = search_images(full_model, tokenizer, index, TEXTS[:1], _load, SearchOptions(k=5, rerank=5))[0]
    assert gone not in [h.entry.path for h in again] and len(again) == 4
    assert gone in caplog.text


def test_search_texts(full_model, tokenizer, tmp_path, pixels) -> None:
    ident = ModelIdentity("tiny", model_fingerprint(full_model), 64)
    index = EmbeddingIndex.create(tmp_path / "texts", IndexKind.TEXTS, ident, full_model.cfg.embed_dim)
    index.add([IndexEntry(t, text=t) for t in TEXTS], embed_texts(full_model, tokenizer, TEXTS))
    s = match_images_texts(full_model, tokenizer, pixels, TEXTS)
    plain = search_texts(full_model, tokenizer, index, pixels, SearchOptions(k=2, batch_size=2))
    for b, row in enumerate(plain):
        assert [h.entry.text for h in row] == [TEXTS[j] for j in s.itc[b].topk(2).indices.tolist()]
    reranked = search_texts(full_model, tokenizer, index, pixels, SearchOptions(k=4, rerank=4))
    for b, row in enumerate(reranked):
        want = (s.itm_logit[b] + s.itc[b]).argsort(descending=True).tolist()
        assert [h.row for h in row] == want
    with pytest.raises(RetrievalIndexError, match="needs images"):
        search_images(full_model, tokenizer, index, TEXTS, _load)


def test_options_validate() -> None:
    with pytest.raises(ValueError):
        SearchOptions(k=0)


def test_an_empty_query_text_is_refused(full_model, tokenizer, gallery) -> None:
    index, _paths, _ = gallery
    with pytest.raises(ValueError, match=r"text 1 is empty \(' ' after cleaning\)"):
        search_images(full_model, tokenizer, index, ["a dog", " "], _load, SearchOptions(k=2))
