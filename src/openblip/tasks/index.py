"""An on-disk gallery of ITC embeddings (images or texts) for retrieval.

Layout of an index directory::

    index.json          {"format": "openblip-index", "format_version": 1, "kind": "images"|"texts",
                         "model": {"source", "fingerprint", "image_size", "tokenizer"},
                         "embed_dim": E, "clean_texts": bool, "parts": [{"name", "count"}, ...]}
    part-000000.npy     float32 (n, E) L2-normalised ITC features, one part per `add`
    part-000000.jsonl   one {"key", "path"} (images) or {"key", "text"} (texts) per row

`add` writes a new part, then replaces index.json atomically, so an interrupted add leaves the
index as it was (an orphan part file at worst). The model fingerprint (architecture, input
size and the ITC projection weights rounded to bf16, so fp32/bf16/fp16 loads of one checkpoint
agree) is checked on every use: embeddings of another model are not comparable.

Search is exact (one matmul) up to FAISS_THRESHOLD rows, FAISS inner product above it
(IndexFlatIP, exact too; IndexIVFFlat when `nlist` is given, approximate and faster).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openblip.model.blip import Blip

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
FORMAT = "openblip-index"
FORMAT_VERSION = 1
FAISS_THRESHOLD = 100_000  # rows above which search uses FAISS by default


class IndexKind(enum.Enum):
    IMAGES = "images"
    TEXTS = "texts"


class RetrievalIndexError(ValueError):
    """An index that cannot be used as asked: the message names the directory."""


@dataclass(frozen=True)
class ModelIdentity:
    source: str  # how to load the model again (an absolute path for local checkpoints)
    fingerprint: str
    image_size: int
    tokenizer: str | None = None  # tokenizer override used when indexing, if any


@dataclass(frozen=True)
class IndexEntry:
    key: str  # unique within the index (absolute path for files, the text for texts)
    path: str | None = None  # images: where to read the image again (ITM re-ranking)
    text: str | None = None  # texts: the text as given


@dataclass
class Neighbors:
    scores: torch.Tensor  # (Q, k) inner products (cosines), best first
    rows: torch.Tensor  # (Q, k) index rows


def model_fingerprint(model: Blip) -> str:
    """sha256 over what ITC embeddings depend on: sizes, input size and the projection heads."""
    cfg = model.cfg.to_dict()
    cfg["vision"].pop("drop_path", None)
    cfg["text"].pop("dropout", None)
    arch = {"vision": cfg["vision"], "text": cfg["text"], "embed_dim": cfg["embed_dim"]}
    h = hashlib.sha256(json.dumps(arch, sort_keys=True).encode())
    tensors: list[torch.Tensor] = [model.visual_encoder.cls_token]
    for head in (model.vision_proj, model.text_proj):
        if head is not None:
            tensors += [head.weight, head.bias]
    for t in tensors:
        h.update(t.detach().to("cpu", torch.bfloat16).view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:32]


class EmbeddingIndex:
    """A directory of ITC embeddings; open with `create`, `open` or `open_or_create`."""

    def __init__(self, directory: Path, meta: dict[str, Any]) -> None:
        self.directory = directory
        self._meta = meta
        self._embeddings: np.ndarray | None = None
        self._entries: list[IndexEntry] | None = None
        self._keys: dict[str, int] | None = None
        self._faiss: Any = None
        self._faiss_key: tuple[int, int, int] | None = None

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        kind: IndexKind,
        identity: ModelIdentity,
        embed_dim: int,
        clean_texts: bool = True,
    ) -> EmbeddingIndex:
        d = Path(directory)
        if (d / INDEX_FILE).exists():
            raise RetrievalIndexError(f"{d}: an index exists already")
        if d.exists() and not d.is_dir():
            raise RetrievalIndexError(f"{d}: exists and is not a directory")
        if d.is_dir() and any(d.iterdir()):
            raise RetrievalIndexError(f"{d}: directory is not empty and holds no index; refusing to write into it")
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind.value,
            "model": asdict(identity),
            "embed_dim": embed_dim,
            "clean_texts": clean_texts,
            "parts": [],
        }
        index = cls(d, meta)
        index._write_meta()
        return index

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> EmbeddingIndex:
        d = Path(directory)
        path = d / INDEX_FILE
        if not path.is_file():
            raise RetrievalIndexError(f"{d}: not an openblip index (no {INDEX_FILE})")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RetrievalIndexError(f"{path}: unreadable index metadata ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise RetrievalIndexError(f"{path}: not an openblip index file")
        if meta.get("format_version") != FORMAT_VERSION:
            raise RetrievalIndexError(f"{path}: index format version {meta.get('format_version')} is not supported")
        return cls(d, meta)

    @classmethod
    def exists(cls, directory: str | os.PathLike[str]) -> bool:
        return (Path(directory) / INDEX_FILE).is_file()

    # ---- properties ----------------------------------------------------------------------------
    @property
    def kind(self) -> IndexKind:
        return IndexKind(self._meta["kind"])

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(**self._meta["model"])

    @property
    def embed_dim(self) -> int:
        return int(self._meta["embed_dim"])

    @property
    def clean_texts(self) -> bool:
        return bool(self._meta.get("clean_texts", True))

    def __len__(self) -> int:
        return sum(int(p["count"]) for p in self._meta["parts"])

    def check_model(self, fingerprint: str) -> None:
        """Refuse a model whose embeddings are not comparable with the stored ones."""
        ident = self.identity
        if fingerprint != ident.fingerprint:
            raise RetrievalIndexError(
                f"{self.directory}: built with another model ({ident.source}, image size {ident.image_size}, "
                f"fingerprint {ident.fingerprint}); this model's fingerprint is {fingerprint}"
            )

    @property
    def entries(self) -> list[IndexEntry]:
        if self._entries is None:
            entries: list[IndexEntry] = []
            for part in self._meta["parts"]:
                path = self.directory / f"{part['name']}.jsonl"
                with open(path, encoding="utf-8") as f:
                    rows = [IndexEntry(**json.loads(line)) for line in f if line.strip()]
                if len(rows) != part["count"]:
                    raise RetrievalIndexError(f"{path}: {len(rows)} rows, index.json says {part['count']}")
                entries += rows
            self._entries = entries
        return self._entries

    def row_of(self, key: str) -> int | None:
        if self._keys is None:
            self._keys = {e.key: i for i, e in enumerate(self.entries)}
        return self._keys.get(key)

    def embeddings(self) -> np.ndarray:
        """(N, E) float32."""
        if self._embeddings is None:
            parts = [self._part_embeddings(part, mmap=False) for part in self._meta["parts"]]
            self._embeddings = np.concatenate(parts) if parts else np.zeros((0, self.embed_dim), np.float32)
        return self._embeddings

    def check_embeddings(self) -> None:
        """Check that every part's embeddings file is there with the shape and type index.json
        says, reading only the file headers (an index of millions of rows is not loaded to add
        to it). Raises OSError or RetrievalIndexError naming the file."""
        for part in self._meta["parts"]:
            self._part_embeddings(part, mmap=True)

    def _part_embeddings(self, part: dict[str, Any], *, mmap: bool) -> np.ndarray:
        path = self.directory / f"{part['name']}.npy"
        arr = np.load(path, mmap_mode="r" if mmap else None)
        if arr.shape != (part["count"], self.embed_dim) or arr.dtype != np.float32:
            want = (part["count"], self.embed_dim)
            raise RetrievalIndexError(f"{path}: {arr.dtype} {arr.shape}, expected float32 {want}")
        return arr

    # ---- writing -------------------------------------------------------------------------------
    def add(self, entries: Sequence[IndexEntry], embeddings: torch.Tensor | np.ndarray) -> list[int | None]:
        """Append entries with their (n, E) embeddings. Keys already present are skipped (None in
        the returned list); the others get their row numbers."""
        emb = embeddings.float().cpu().numpy() if isinstance(embeddings, torch.Tensor) else embeddings
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.shape != (len(entries), self.embed_dim):
            want = (len(entries), self.embed_dim)
            raise ValueError(f"{len(entries)} entries need embeddings of shape {want}, got {emb.shape}")
        rows: list[int | None] = []
        keep: list[int] = []
        seen: set[str] = set()
        next_row = len(self)
        for i, e in enumerate(entries):
            if (self.kind is IndexKind.IMAGES) != (e.path is not None) or (self.kind is IndexKind.TEXTS) != (
                e.text is not None
            ):
                raise ValueError(f"entry {i} ({e.key!r}) does not fit an index of {self.kind.value}")
            if self.row_of(e.key) is not None or e.key in seen:
                rows.append(None)
                continue
            seen.add(e.key)
            keep.append(i)
            rows.append(next_row)
            next_row += 1
        if not keep:
            return rows
        name = f"part-{len(self._meta['parts']):06d}"
        np.save(self.directory / f"{name}.npy", emb[keep])
        with open(self.directory / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in keep:
                f.write(json.dumps({k: v for k, v in asdict(entries[i]).items() if v is not None}) + "\n")
        self._meta["parts"].append({"name": name, "count": len(keep)})
        self._write_meta()
        self._embeddings = self._entries = self._keys = None
        return rows

    def _write_meta(self) -> None:
        tmp = self.directory / f"{INDEX_FILE}.tmp"
        tmp.write_text(json.dumps(self._meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.directory / INDEX_FILE)

    # ---- search --------------------------------------------------------------------------------
    def search(
        self,
        queries: torch.Tensor,
        k: int,
        *,
        use_faiss: bool | None = None,
        nlist: int = 0,
        nprobe: int = 16,
    ) -> Neighbors:
        """Top-k rows by inner product for each query (Q, E). use_faiss None: FAISS above
        FAISS_THRESHOLD rows. nlist > 0: an IVF index with that many lists (approximate)."""
        n = len(self)
        k = min(k, n)
        q = queries.float().cpu()
        if q.dim() != 2 or q.shape[1] != self.embed_dim:
            raise ValueError(f"queries must be (Q, {self.embed_dim}), got {tuple(q.shape)}")
        if k == 0 or q.shape[0] == 0:
            return Neighbors(torch.zeros(q.shape[0], 0), torch.zeros(q.shape[0], 0, dtype=torch.long))
        if use_faiss is None:
            use_faiss = n > FAISS_THRESHOLD or nlist > 0
        if use_faiss:
            return self._faiss_search(q, k, nlist, nprobe)
        return exact_search(torch.from_numpy(self.embeddings()), q, k)

    def _faiss_search(self, q: torch.Tensor, k: int, nlist: int, nprobe: int) -> Neighbors:
        faiss = import_faiss()
        key = (len(self), nlist, nprobe)
        if self._faiss is None or self._faiss_key != key:
            emb = self.embeddings()
            if nlist > 0:
                if nlist > len(emb):
                    raise ValueError(f"nlist {nlist} exceeds the {len(emb)} indexed rows")
                quantizer = faiss.IndexFlatIP(self.embed_dim)
                index = faiss.IndexIVFFlat(quantizer, self.embed_dim, nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(emb)
                index.nprobe = nprobe
            else:
                index = faiss.IndexFlatIP(self.embed_dim)
            index.add(emb)
            self._faiss, self._faiss_key = index, key
        scores, rows = self._faiss.search(np.ascontiguousarray(q.numpy()), k)
        return Neighbors(torch.from_numpy(scores), torch.from_numpy(rows).long())  # rows -1 where IVF found fewer


def exact_search(gallery: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 1024) -> Neighbors:
    """Top-k of queries (Q, E) against gallery (N, E) by inner product, queries in chunks."""
    scores, rows = [], []
    for lo in range(0, queries.shape[0], chunk):
        s, r = (queries[lo : lo + chunk] @ gallery.t()).topk(k, dim=1)
        scores.append(s)
        rows.append(r)
    return Neighbors(torch.cat(scores), torch.cat(rows))


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "searching with FAISS needs the faiss package: pip install faiss-cpu (or openblip[faiss]); "
            "exact search without it is available with use_faiss=False"
        ) from e
    return faiss
