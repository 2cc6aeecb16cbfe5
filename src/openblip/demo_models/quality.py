"""The demo models' quality on synthetic-scenes splits they never saw (a fresh seed).

    retrieval   recall@1/5 both ways (ITC top-k re-ranked by ITM, `train.evaluate.retrieval_eval`)
                with one text per image, its complete listing (reference 0), and with all five
                references (partial ones, "the background is grey", fit many images)
    captions    CIDEr-D and the scene attribute F1 of beam-search captions
    vqa         accuracy (exact match of the single true answer) per question type and overall
    filter      precision and recall of flagging the noisy web texts (ITM probability < threshold)
                against the web split's noise labels; recall per noise type, and the share of
                clean texts flagged

`measure_quality` returns plain dicts of numbers; scripts/demo_models_quality.py prints them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openblip.checkpoint_io import load_model
from openblip.data.formats import iter_samples
from openblip.data.sample import Sample
from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark
from openblip.data.web_noise import NOISE_TYPES, WebNoise
from openblip.evaluate.harness import EvalItem, caption_eval, load_eval_items, retrieval_eval
from openblip.evaluate.vqa import normalize_answer
from openblip.image import load_image, preprocess
from openblip.model.blip import Blip
from openblip.tasks.inputs import RETRIEVAL_MAX_TOKENS, tokenize
from openblip.tasks.vqa import answer_questions
from openblip.text_cleaning import pre_caption
from openblip.tokenizer import Tokenizer

FILTER_THRESHOLD = 0.5  # `openblip bootstrap`'s default: a text is kept when ITM > 0.5


@dataclass(frozen=True)
class FilterScore:
    key: str
    noise: str  # WebNoise value
    itm: float  # probability that the web text matches its image


def _first(samples: Sequence[Sample] | Any, limit: int) -> list[Sample]:
    out: list[Sample] = []
    for s in samples:
        out.append(s)
        if limit and len(out) >= limit:
            break
    return out


@torch.inference_mode()
def web_itm_scores(model: Blip, tokenizer: Tokenizer, web_split: str | Path, limit: int = 0) -> list[FilterScore]:
    """ITM match probability of every web image with its own alt-text, with its noise label."""
    samples = _first(iter_samples(web_split), limit)
    size = model.cfg.vision.image_size
    out: list[FilterScore] = []
    for lo in range(0, len(samples), 32):
        chunk = samples[lo : lo + 32]
        pixels = preprocess([load_image(s.image_bytes, name=s.key) for s in chunk], size).to(model.device)
        texts = [pre_caption(s.text or "", 30) or "-" for s in chunk]
        ids, mask = tokenize(tokenizer, texts, RETRIEVAL_MAX_TOKENS, model.device)
        logits = model.itm_logits(ids, mask, model.encode_image(pixels)).float()
        probs = logits.softmax(-1)[:, 1].cpu().tolist()
        out.extend(FilterScore(s.key, str(s.meta.get("noise", "clean")), p) for s, p in zip(chunk, probs))
    return out


def filter_metrics(scores: Sequence[FilterScore], threshold: float = FILTER_THRESHOLD) -> dict[str, Any]:
    """Precision and recall of 'ITM < threshold' as a detector of noisy web texts."""
    flagged = [s.itm < threshold for s in scores]
    noisy = [s.noise != WebNoise.CLEAN.value for s in scores]
    tp = sum(f and n for f, n in zip(flagged, noisy))
    n_flagged, n_noisy = sum(flagged), sum(noisy)
    clean = len(scores) - n_noisy
    per_type: dict[str, dict[str, float]] = {}
    for kind in NOISE_TYPES:
        rows = [f for f, s in zip(flagged, scores) if s.noise == kind.value]
        if rows:
            per_type[kind.value] = {"texts": float(len(rows)), "recall": sum(rows) / len(rows)}
    return {
        "threshold": threshold,
        "texts": len(scores),
        "noisy": n_noisy,
        "flagged": n_flagged,
        "precision": tp / n_flagged if n_flagged else 0.0,
        "recall": tp / n_noisy if n_noisy else 0.0,
        "clean_flagged": (n_flagged - tp) / clean if clean else 0.0,
        "per_type": per_type,
    }


@torch.inference_mode()
def vqa_by_type(model: Blip, tokenizer: Tokenizer, test_split: str | Path, limit: int = 0) -> dict[str, Any]:
    """Exact-match accuracy (%) of generated answers per question type, from the scenes' meta['qa']."""
    samples = _first(iter_samples(test_split), limit)
    pairs = [(s, str(qa["question"]), str(qa["answer"]), str(qa["type"])) for s in samples for qa in s.meta["qa"]]
    size = model.cfg.vision.image_size
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for lo in range(0, len(pairs), 64):
        chunk = pairs[lo : lo + 64]
        pixels = preprocess([load_image(s.image_bytes, name=s.key) for s, _, _, _ in chunk], size).to(model.device)
        answers = answer_questions(model, tokenizer, pixels, [q for _, q, _, _ in chunk])
        for (_, _, truth, kind), predicted in zip(chunk, answers):
            total[kind] += 1
            right[kind] += normalize_answer(predicted.text) == normalize_answer(truth)
    n = sum(total.values())
    return {
        "questions": n,
        "accuracy": 100.0 * sum(right.values()) / n if n else 0.0,
        "per_type": {k: 100.0 * right[k] / total[k] for k in sorted(total)},
    }


def _listing_only(items: Sequence[EvalItem]) -> list[EvalItem]:
    """Each item with its complete listing (reference 0) as its only text."""
    return [dataclasses.replace(it, references=it.references[:1]) for it in items]


@torch.inference_mode()
def retrieval_and_captions(
    model: Blip, tokenizer: Tokenizer, test_split: str | Path, limit: int = 100
) -> dict[str, Any]:
    items = load_eval_items(test_split, limit)
    listing = retrieval_eval(model, tokenizer, _listing_only(items), k_test=16)
    every = retrieval_eval(model, tokenizer, items, k_test=16)
    scores, captions = caption_eval(model, tokenizer, items)
    keys = ("txt_r1", "txt_r5", "img_r1", "img_r5")
    return {
        "images": len(items),
        "retrieval_listing": {k: listing[k] for k in keys},
        "retrieval_all_references": {k: every[k] for k in keys},
        "caption": {k: scores[k] for k in ("CIDEr", "BLEU-4", "attribute_f1", "shuffled_f1")},
        "examples": [{"key": it.key, "caption": c, "reference": it.references[0]} for it, c in zip(items, captions)][
            :5
        ],
    }


def fresh_split(out: str | Path, seed: int, test_images: int, web_texts: int) -> Path:
    """A synthetic-scenes benchmark with only test and web splits, written once (an existing
    complete one is reused); `seed` must be one the demo models were not trained on (100)."""
    path = Path(out)
    if not (path / "manifest.json").is_file():
        write_benchmark(path, SynthConfig(SynthSize(train=0, web=web_texts, test=test_images), seed=seed))
    return path


def measure_quality(
    data_dir: str | Path,
    *,
    caption_filter: str | Path = "synthetic-caption",
    vqa: str | Path = "synthetic-vqa",
    test_images: int = 100,
) -> dict[str, Any]:
    """Every figure of the module docstring on `data_dir`'s test and web splits."""
    data = Path(data_dir)
    blip = load_model(caption_filter)
    out = retrieval_and_captions(blip.model, blip.tokenizer, data / "test", test_images)
    out["filter"] = filter_metrics(web_itm_scores(blip.model, blip.tokenizer, data / "web"))
    answerer = load_model(vqa)
    out["vqa"] = vqa_by_type(answerer.model, answerer.tokenizer, data / "test", test_images)
    return out
