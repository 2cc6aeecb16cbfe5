"""Zero-shot classification: each label becomes a text through a prompt template ("a picture
of a {}." by default, BLIP's captioning prompt made a sentence) and the labels are ranked by
ITC cosine with the image, as CLIP-style zero-shot classification.

Probabilities are softmax(cosine / temp) over all labels, temp being the checkpoint's learned
ITC temperature (clamped to [0.001, 0.5] as the original training does). With `rerank` > 0
the best `rerank` labels are re-scored as the original retrieval does (ITM match logit +
cosine) and the probabilities become a softmax over those re-ranked scores (the other labels
get probability 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from openblip.model.blip import Blip
from openblip.tasks.inputs import (
    CAPTION_MAX_WORDS,
    RETRIEVAL_MAX_TOKENS,
    clean_texts,
    embed_texts,
    encode_images,
    require_heads,
    token_limit,
    tokenize,
)
from openblip.tasks.match import itm_match_logits
from openblip.text_cleaning import pre_caption
from openblip.tokenizer import Tokenizer

DEFAULT_TEMPLATE = "a picture of a {}."
TEMP_RANGE = (0.001, 0.5)  # the original clamps temp to this range in training


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float
    itc: float  # cosine of the image and the label's prompt
    itm: float | None = None  # ITM probability of match, when re-ranked


@dataclass
class LabelSet:
    """Labels with their prompts tokenized and embedded once, reused for every image batch."""

    labels: list[str]
    ids: torch.Tensor  # (L, T) cleaned prompt ids
    mask: torch.Tensor  # (L, T)
    embeds: torch.Tensor  # (L, E) ITC features, on the model's device


def prepare_labels(
    model: Blip, tokenizer: Tokenizer, labels: Iterable[str], template: str = DEFAULT_TEMPLATE
) -> LabelSet:
    """The labels' prompts tokenized and embedded, in first-seen order (a repeat counts once)."""
    require_heads(model, "zero-shot classification")
    labels = list(labels)  # an iterator is read once: the checks below would consume it
    if not labels:
        raise ValueError("no labels to classify with")
    if "{}" not in template:
        raise ValueError(f"the prompt template {template!r} has no {{}} for the label")
    for i, label in enumerate(labels):
        check_label(label, i)
    labels = list(dict.fromkeys(labels))  # a repeat would be reported twice and split the probability
    prompts = clean_texts([template.replace("{}", label) for label in labels], True)
    ids, mask = tokenize(tokenizer, prompts, token_limit(model, RETRIEVAL_MAX_TOKENS), model.device)
    embeds = embed_texts(model, tokenizer, prompts, clean=False).to(model.device)
    return LabelSet(list(labels), ids, mask, embeds)


def check_label(label: str, index: int) -> None:
    """A label must be a str with words left after pre_caption: "!!!" would make the prompt
    "a picture of a", which says nothing about it."""
    if not isinstance(label, str):
        raise TypeError(f"label {index} is {type(label).__name__}, expected str")
    if not pre_caption(label, CAPTION_MAX_WORDS):
        raise ValueError(f"label {index} is empty ({label!r} after cleaning)")


def temperature(model: Blip) -> float:
    require_heads(model, "zero-shot classification")
    assert model.temp is not None
    return float(model.temp.detach().float().clamp(*TEMP_RANGE))


@torch.inference_mode()
def classify_images(
    model: Blip,
    tokenizer: Tokenizer,
    pixels: torch.Tensor,
    labels: LabelSet,
    *,
    top_k: int = 5,
    rerank: int = 0,
) -> list[list[LabelScore]]:
    """The top_k labels of each image of pixels (B, 3, S, S), best first."""
    if top_k < 1 or rerank < 0:
        raise ValueError("top_k must be >= 1 and rerank >= 0")
    if pixels.shape[0] == 0:
        return []
    tokens = encode_images(model, pixels)  # (B, 1+N, Dv)
    itc = model.itc_similarity(model.image_embed(tokens), labels.embeds.to(tokens.dtype)).float()  # (B, L)
    n = len(labels.labels)
    results = []
    if rerank == 0:
        probs = (itc / temperature(model)).softmax(-1)
        top = probs.topk(min(top_k, n), dim=1).indices
        for b in range(itc.shape[0]):
            results.append(
                [LabelScore(labels.labels[j], float(probs[b, j]), float(itc[b, j])) for j in top[b].tolist()]
            )
        return results
    r = min(rerank, n)
    cand = itc.topk(r, dim=1).indices  # (B, r)
    for b in range(itc.shape[0]):
        rows = cand[b]
        logits = itm_match_logits(model, labels.ids[rows], labels.mask[rows], tokens[b : b + 1])[0]  # (r, 2)
        score = logits[:, 1] + itc[b, rows]
        probs = score.softmax(-1)
        itm = logits.softmax(-1)[:, 1]
        order = score.argsort(descending=True)[: min(top_k, r)]
        results.append(
            [
                LabelScore(labels.labels[int(rows[j])], float(probs[j]), float(itc[b, rows[j]]), float(itm[j]))
                for j in order.tolist()
            ]
        )
    return results
