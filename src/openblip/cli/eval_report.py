"""The cards of `openblip eval --report FILE.html` (evaluate/report.py lays them out): one per
image (caption), per question (VQA), per image query and per caption query (retrieval)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from openblip.evaluate.report import Card, Hit, Section, thumbnail

if TYPE_CHECKING:
    import torch

    from openblip.evaluate.harness import EvalItem, RetrievalRun, VqaAnswer

TOP_HITS = 5  # retrieved items shown per query
HIT_SIDE = 64  # pixels: a hit's thumbnail (each text query shows TOP_HITS of them)


def _thumbnails(items: Sequence[EvalItem], side: int | None = None) -> list[str]:
    return [thumbnail(it.image) if side is None else thumbnail(it.image, side) for it in items]


def caption_sections(items: Sequence[EvalItem], captions: Sequence[str]) -> list[Section]:
    from openblip.evaluate.caption_metrics import evaluate_captions

    scored = [(i, it) for i, it in enumerate(items) if it.references]
    per_item = (
        evaluate_captions({i: captions[i] for i, _ in scored}, {i: it.references for i, it in scored}).per_item
        if scored
        else {}
    )
    thumbs = _thumbnails(items)
    cards = [
        Card(
            key=it.key,
            score=per_item[i]["CIDEr"] if i in per_item else 0.0,
            image=thumbs[i],
            output=captions[i],
            references=it.references,
        )
        for i, it in enumerate(items)
    ]
    return [Section("captions", "CIDEr (this image against its references)", cards, label="CIDEr")]


def vqa_sections(items: Sequence[EvalItem], answers: Sequence[VqaAnswer]) -> list[Section]:
    thumbs = _thumbnails(items)
    cards = [
        Card(
            key=items[a.item].key,
            score=a.accuracy,
            image=thumbs[a.item],
            question=a.question,
            output=a.predicted,
            references=a.given,
        )
        for a in answers
    ]
    return [Section("answers", "VQA accuracy (%)", cards, label="accuracy")]


def _order(row: torch.Tensor) -> list[int]:
    """Indices by decreasing score (the re-ranked ones first: the rest hold -100)."""
    return [int(j) for j in row.argsort(descending=True, stable=True)]


def retrieval_sections(items: Sequence[EvalItem], run: RetrievalRun) -> list[Section]:
    thumbs, small = _thumbnails(items), _thumbnails(items, HIT_SIDE)
    image_cards = []
    for i, it in enumerate(items):
        row = run.scores_i2t[i]
        order = _order(row)
        rank = next(r for r, t in enumerate(order) if run.txt2img[t] == i) + 1
        hits = [Hit(run.texts[t], float(row[t]), run.txt2img[t] == i) for t in order[:TOP_HITS]]
        image_cards.append(Card(key=it.key, score=rank, image=thumbs[i], references=it.references, hits=hits))
    text_cards = []
    for t, text in enumerate(run.texts):
        row = run.scores_t2i[t]
        order = _order(row)
        own = run.txt2img[t]
        rank = order.index(own) + 1
        hits = [Hit(items[j].key, float(row[j]), j == own, image=small[j]) for j in order[:TOP_HITS]]
        text_cards.append(Card(key=items[own].key, score=rank, query=text, hits=hits))
    note = "scores: ITM match logit + ITC cosine for the k_test best by ITC (as BLIP's evaluation), -100 for the rest"
    return [
        Section("image -> text", "rank of the first correct caption", image_cards, False, (note,), "rank"),
        Section("text -> image", "rank of the caption's image", text_cards, False, (note,), "rank"),
    ]
