from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
import torch

from openblip.tasks.index import (
    EmbeddingIndex,
    IndexEntry,
    IndexKind,
    ModelIdentity,
    RetrievalIndexError,
    exact_search,
    model_fingerprint,
)

IDENT = ModelIdentity("/models/tiny", "f" * 32, 64)


def _unit(n: int, seed: int, dim: int = 8) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _entries(names: list[str]) -> list[IndexEntry]:
    return [IndexEntry(n, path=f"/img/{n}") for n in names]


def test_add_search_round_trip(tmp_path) -> None:
    d = tmp_path / "idx"
    index = EmbeddingIndex.create(d, IndexKind.IMAGES, IDENT, 8)
    emb = _unit(5, 0)
    assert index.add(_entries(list("abcde")), emb) == [0, 1, 2, 3, 4]
    # a later add: new images appended, known keys skipped
    more = _unit(3, 1)
    assert index.add(_entries(["c", "f", "f"]), more) == [None, 5, None]
    again = EmbeddingIndex.open(d)
    assert len(again) == 6 and again.kind is IndexKind.IMAGES and again.identity == IDENT
    assert [e.key for e in again.entries] == list("abcdef")
    assert again.entries[5].path == "/img/f"
    assert np.allclose(again.embeddings(), np.concatenate([emb, more[1:2]]))
    nb = again.search(torch.from_numpy(emb[2:3]), 3)
    assert nb.rows[0, 0].item() == 2 and nb.scores[0, 0].item() == pytest.approx(1.0, abs=1e-5)
    assert nb.rows.shape == (1, 3)
    meta = json.loads((d / "index.json").read_text())
    assert [p["count"] for p in meta["parts"]] == [5, 1]
    assert again.search(torch.from_numpy(emb[:1]), 50).rows.shape == (1, 6)  # k capped at the size


def test_create_refuses_existing_or_foreign_directories(tmp_path) -> None:
    EmbeddingIndex.create(tmp_path / "a", IndexKind.TEXTS, IDENT, 8)
    with pytest.raises(RetrievalIndexError, match="exists already"):
        EmbeddingIndex.create(tmp_path / "a", IndexKind.TEXTS, IDENT, 8)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    with pytest.raises(RetrievalIndexError, match="not empty"):
        EmbeddingIndex.create(tmp_path / "b", IndexKind.TEXTS, IDENT, 8)
    with pytest.raises(RetrievalIndexError, match="not an openblip index"):
        EmbeddingIndex.open(tmp_path / "b")


def test_entries_must_fit_the_kind_and_shapes(tmp_path) -> None:
    index = EmbeddingIndex.create(tmp_path / "t", IndexKind.TEXTS, IDENT, 8)
    with pytest.raises(ValueError, match="does not fit"):
        index.add(_entries(["a"]), _unit(1, 0))
    with pytest.raises(ValueError, match="shape"):
        index.add([IndexEntry("a", text="a")], _unit(2, 0))
    assert index.add([IndexEntry("a", text="a")], _unit(1, 0)) == [0]


def test_model_check(tmp_path, full_model) -> None:
    fp = model_fingerprint(full_model)
    index = EmbeddingIndex.create(tmp_path / "m", IndexKind.IMAGES, ModelIdentity("x", fp, 64), 8)
    index.check_model(fp)
    assert model_fingerprint(copy.deepcopy(full_model).to(torch.bfloat16)) == fp  # same checkpoint, other dtype
    other = copy.deepcopy(full_model)
    with torch.no_grad():
        other.vision_proj.weight.add_(0.1)
    with pytest.raises(RetrievalIndexError, match="another model"):
        index.check_model(model_fingerprint(other))


def test_faiss_and_exact_rank_alike(tmp_path) -> None:
    pytest.importorskip("faiss")
    index = EmbeddingIndex.create(tmp_path / "f", IndexKind.IMAGES, IDENT, 8)
    index.add(_entries([f"i{i}" for i in range(300)]), _unit(300, 2))
    queries = torch.from_numpy(_unit(7, 3))
    exact = index.search(queries, 10, use_faiss=False)
    flat = index.search(queries, 10, use_faiss=True)
    assert torch.equal(exact.rows, flat.rows)
    assert torch.allclose(exact.scores, flat.scores, atol=1e-5)
    ivf = index.search(queries, 10, nlist=4, nprobe=4)  # every list probed: exact again
    assert torch.equal(exact.rows, ivf.rows)
    brute = torch.from_numpy(index.embeddings()) @ queries.t()
    assert torch.equal(exact.rows, brute.t().topk(10).indices)


def test_exact_search_chunks() -> None:
    g = torch.from_numpy(_unit(50, 4))
    q = torch.from_numpy(_unit(9, 5))
    a, b = exact_search(g, q, 5, chunk=2), exact_search(g, q, 5)
    assert torch.equal(a.rows, b.rows)


def test_missing_faiss_is_a_clear_error(tmp_path, monkeypatch) -> None:
    index = EmbeddingIndex.create(tmp_path / "n", IndexKind.IMAGES, IDENT, 8)
    index.add(_entries(["a", "b"]), _unit(2, 0))
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        index.search(torch.from_numpy(_unit(1, 1)), 1, use_faiss=True)
    assert index.search(torch.from_numpy(_unit(1, 1)), 1).rows.shape == (1, 1)  # small: exact, no faiss needed
