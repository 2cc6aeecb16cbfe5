"""What runs on the model thread: one batch of one key, through openblip.tasks.

A key says what the batch does and with which settings (a frozen dataclass per task, hashable:
the batcher groups items by it). Items are single images (or texts), so `--max-batch` counts
images whatever the requests bring. With a scorer, every caption and answer is scored against
its image with ITM (tasks.match.match_pairs) and the image's ITC feature comes back for drift.

Which model does what: captions and answers come from the served model; match, embed,
classify, search and explain use the served model when it has the ITC/ITM heads, else the scorer.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from openblip.api import BlipPipeline
from openblip.model.generate import GenerationConfig
from openblip.tasks.caption import caption_images
from openblip.tasks.classify import LabelScore, LabelSet, classify_images, prepare_labels
from openblip.tasks.explain import explain_loaded
from openblip.tasks.index import EmbeddingIndex
from openblip.tasks.inputs import check_text, embed_images, embed_texts
from openblip.tasks.match import match_images_texts, match_pairs
from openblip.tasks.retrieval import Hit, SearchOptions
from openblip.tasks.vqa import answer_questions_n, rank_answers

log = logging.getLogger(__name__)

_LABEL_SETS = 32  # label sets (classify) kept embedded between requests


# ---- keys ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionKey:
    cfg: GenerationConfig
    prompt: str


@dataclass(frozen=True)
class VqaKey:
    cfg: GenerationConfig
    candidates: tuple[str, ...] | None  # rank these instead of generating
    # Sampled answers draw from each row's position in the decoder call (tasks/vqa.py groups by
    # question length), so a sampled request gets a batch of its own: its seed then repeats.
    alone: str | None = None


@dataclass(frozen=True)
class MatchKey:
    texts: tuple[str, ...]


@dataclass(frozen=True)
class EmbedImagesKey:
    pass


@dataclass(frozen=True)
class EmbedTextsKey:
    pass


@dataclass(frozen=True)
class ClassifyKey:
    labels: tuple[str, ...]
    template: str
    top_k: int
    rerank: int


@dataclass(frozen=True)
class SearchImagesKey:  # items: query texts
    options: SearchOptions


@dataclass(frozen=True)
class SearchTextsKey:  # items: query images
    options: SearchOptions


@dataclass(frozen=True)
class ExplainKey:  # items: images; Grad-CAM batches images that share one text and layer
    text: str
    layer: int


BatchKey = (
    CaptionKey
    | VqaKey
    | MatchKey
    | EmbedImagesKey
    | EmbedTextsKey
    | ClassifyKey
    | SearchImagesKey
    | SearchTextsKey
    | ExplainKey
)


# ---- items and results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionItem:
    image: Image.Image
    sample_key: int  # the image's position in its request: seeded samples do not depend on batching


@dataclass(frozen=True)
class VqaItem:
    image: Image.Image
    question: str


@dataclass(frozen=True)
class Output:
    text: str
    score: float  # beam score / summed log-prob (generation), -CE (ranking)
    itm: float | None  # the scorer's ITM probability of (image, text); None without a scorer
    finished: bool = True  # generation ended with [SEP] (False: cut by max_length)


@dataclass(frozen=True)
class Generated:
    outputs: tuple[Output, ...]  # best first
    embedding: torch.Tensor | None  # (E,) the scorer's ITC image feature, for drift


class Engine:
    """The served model, an optional scorer and index; `run(key, items)` for the batcher."""

    def __init__(
        self, model: BlipPipeline, scorer: BlipPipeline | None = None, index: EmbeddingIndex | None = None
    ) -> None:
        self.model = model
        self.scorer = scorer
        self.index = index
        self.matcher = model if model.model.cfg.heads else scorer  # ITC/ITM tasks
        self._label_sets: OrderedDict[tuple[tuple[str, ...], str], LabelSet] = OrderedDict()

    def run(self, key: Any, items: list[Any]) -> Sequence[Any]:
        match key:
            case CaptionKey():
                return self._caption(key, items)
            case VqaKey():
                return self._vqa(key, items)
            case MatchKey():
                m = self._need_matcher()
                s = match_images_texts(m.model, m.tokenizer, m.preprocess(items), list(key.texts))
                return [list(zip(s.itm[b].tolist(), s.itc[b].tolist())) for b in range(len(items))]
            case EmbedImagesKey():
                m = self._need_matcher()
                return list(embed_images(m.model, m.preprocess(items)))
            case EmbedTextsKey():
                m = self._need_matcher()
                return list(embed_texts(m.model, m.tokenizer, items))
            case ClassifyKey():
                return self._classify(key, items)
            case SearchImagesKey():
                m, index = self._need_index()
                return m.search_images(index, items, key.options)
            case SearchTextsKey():
                m, index = self._need_index()
                return m.search_texts(index, items, key.options)
            case ExplainKey():
                m = self._need_matcher()
                return [row[0] for row in explain_loaded(m.model, m.tokenizer, items, [key.text], layer=key.layer)]
        raise TypeError(f"no task for batch key {key!r}")

    def _need_matcher(self) -> BlipPipeline:
        if self.matcher is None:  # the app checks before queueing; this guards direct use
            raise ValueError("no model with ITC/ITM heads is loaded (give --scorer)")
        return self.matcher

    def _need_index(self) -> tuple[BlipPipeline, EmbeddingIndex]:
        if self.index is None:
            raise ValueError("no index is loaded (start the server with --index)")
        return self._need_matcher(), self.index

    def _caption(self, key: CaptionKey, items: list[CaptionItem]) -> list[Generated]:
        m = self.model
        images = [it.image for it in items]
        caps = caption_images(
            m.model, m.tokenizer, m.preprocess(images), key.cfg, key.prompt, sample_keys=[it.sample_key for it in items]
        )
        texts = [[c.text for c in per] for per in caps]
        scores, embeds = self._score(images, texts)
        eos = key.cfg.eos_token_id
        return [
            Generated(tuple(Output(c.text, c.score, s, eos in c.ids) for c, s in zip(per, sc)), e)
            for per, sc, e in zip(caps, scores, embeds)
        ]

    def _vqa(self, key: VqaKey, items: list[VqaItem]) -> list[Generated]:
        m = self.model
        images = [it.image for it in items]
        questions = [it.question for it in items]
        pixels = m.preprocess(images)
        if key.candidates is None:
            answers = answer_questions_n(m.model, m.tokenizer, pixels, questions, key.cfg)
        else:
            answers = [[a] for a in rank_answers(m.model, m.tokenizer, pixels, questions, key.candidates)]
        # an answer alone ("2", "yes") says little to ITM: the question and answer together are scored
        scores, embeds = self._score(images, [[f"{q} {a.text}" for a in per] for q, per in zip(questions, answers)])
        return [
            Generated(tuple(Output(a.text, a.score, s) for a, s in zip(per, sc)), e)
            for per, sc, e in zip(answers, scores, embeds)
        ]

    def _classify(self, key: ClassifyKey, items: list[Image.Image]) -> list[list[LabelScore]]:
        m = self._need_matcher()
        cache_key = (key.labels, key.template)
        labels = self._label_sets.get(cache_key)
        if labels is None:
            labels = prepare_labels(m.model, m.tokenizer, key.labels, key.template)
            self._label_sets[cache_key] = labels
            while len(self._label_sets) > _LABEL_SETS:
                self._label_sets.popitem(last=False)
        self._label_sets.move_to_end(cache_key)
        return classify_images(m.model, m.tokenizer, m.preprocess(items), labels, top_k=key.top_k, rerank=key.rerank)

    def _score(
        self, images: list[Image.Image], texts: list[list[str]]
    ) -> tuple[list[list[float | None]], list[torch.Tensor | None]]:
        """The scorer's ITM probability of each image with each of its texts (None for a text
        with nothing to score, e.g. an empty caption), and each image's ITC feature."""
        if self.scorer is None:
            return [[None] * len(t) for t in texts], [None] * len(images)
        s = self.scorer
        pairs = [(b, j) for b, per in enumerate(texts) for j, t in enumerate(per) if _scorable(t)]
        pixels = s.preprocess(images)
        rows = torch.tensor([b for b, _ in pairs] or list(range(len(images))), dtype=torch.long)
        result = match_pairs(
            s.model, s.tokenizer, pixels[rows], [texts[b][j] for b, j in pairs] or ["image"] * len(images)
        )
        itm: list[list[float | None]] = [[None] * len(t) for t in texts]
        embeds: list[torch.Tensor | None] = [None] * len(images)
        for r, b in enumerate(rows.tolist()):
            embeds[b] = result.image_embeds[r]
            if pairs:
                itm[b][pairs[r][1]] = float(result.itm[r])
        return itm, embeds


def _scorable(text: str) -> bool:
    try:
        check_text(text, 0)
    except ValueError:
        return False
    return True


def hit_record(rank: int, hit: Hit) -> dict[str, Any]:
    """One search result as JSON: the CLI's fields (cli/search_cmd.py)."""
    found = {"image": hit.entry.path} if hit.entry.path is not None else {"text": hit.entry.text}
    return {"rank": rank, **found, "score": hit.score, "itc_score": hit.itc, "itm_score": hit.itm}
