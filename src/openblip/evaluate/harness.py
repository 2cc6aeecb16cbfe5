"""Evaluation of a trained model on a held-out split: retrieval, captioning, VQA.

Each task is its own function returning a plain dict of numbers (the CLI prints it as JSON);
retrieval_run and vqa_run return the same with the per-item results an HTML report shows:
  retrieval_eval  ITC similarities, the top k re-ranked by ITM (score = match logit + cosine, as
                  train_retrieval.py `evaluation`), recall@K both ways
  caption_eval    generated captions -> BLEU-1..4, ROUGE-L, CIDEr, and on synthetic scenes the
                  attribute F1 against the scene graph (plus the same F1 of captions paired with
                  the wrong images: the level a caption blind to its image reaches)
  vqa_eval        generated answers -> official VQA accuracy and exact match
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from openblip.data.formats import iter_samples
from openblip.data.sample import Sample
from openblip.data.scene import SceneGraph
from openblip.evaluate.caption_metrics import caption_scores
from openblip.evaluate.retrieval import recall_at_k
from openblip.evaluate.scene_f1 import corpus_scene_f1
from openblip.evaluate.vqa import VqaEvalRules, normalize_answer, vqa_accuracy
from openblip.image import load_image, preprocess
from openblip.model.blip import Blip
from openblip.model.generate import GenerationConfig
from openblip.tasks.caption import caption_images
from openblip.tasks.inputs import embed_texts, tokenize
from openblip.tasks.vqa import answer_questions
from openblip.text_cleaning import pre_caption
from openblip.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# The original's beam search (3 beams, min 5) with room for the synthetic scenes' longer captions.
CAPTION_GENERATION = GenerationConfig(max_length=30, min_length=5, num_beams=3)
RETRIEVAL_TEXT_TOKENS = 35  # train_retrieval.py: padding='max_length', max_length=35

# progress(stage, done, total): called after each batch of a stage (the CLI draws a bar or logs lines).
Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class EvalItem:
    key: str
    image: Image.Image
    references: list[str]
    scene: SceneGraph | None = None
    questions: list[tuple[str, list[str]]] = field(default_factory=list)  # (question, answers)


def load_eval_items(path: str | Path, limit: int = 0) -> list[EvalItem]:
    """Items of a split (shards, .tar, .jsonl, folder): references from meta['references'] or the
    sample text; the scene graph and questions when the metadata has them (synthetic scenes)."""
    items: list[EvalItem] = []
    for sample in iter_samples(path):
        items.append(_eval_item(sample))
        if limit and len(items) >= limit:
            break
    if not items:
        raise ValueError(f"no evaluation samples in {path}")
    return items


def _eval_item(sample: Sample) -> EvalItem:
    """An item from a sample; malformed metadata is a ValueError naming the sample."""
    refs = sample.meta.get("references")
    references = [str(r) for r in refs] if isinstance(refs, list) and refs else []
    if not references and sample.text:
        references = [sample.text]
    try:
        scene_json = sample.meta.get("scene")
        scene = SceneGraph.from_json(scene_json) if isinstance(scene_json, dict) else None
        questions = _questions(sample.meta)
    except ValueError as e:
        raise ValueError(f"evaluation item {sample.key!r}: {e}") from e
    image = load_image(sample.image_bytes, name=sample.key)
    return EvalItem(sample.key, image, references, scene, questions)


def _questions(meta: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(question, answers) pairs of meta['qa'] ([{question, answer}, ...]) and meta['question']."""
    questions: list[tuple[str, list[str]]] = []
    qa_list = meta.get("qa") or []
    if not isinstance(qa_list, list):
        raise ValueError(f"'qa' must be a list of {{question, answer}} objects, got {type(qa_list).__name__}")
    for qa in qa_list:
        if not isinstance(qa, dict) or "question" not in qa or "answer" not in qa:
            raise ValueError(f"each 'qa' entry needs a question and an answer, got {qa!r}")
        questions.append((str(qa["question"]), [str(qa["answer"])]))
    if "question" in meta:
        answers = meta.get("answers") or [meta.get("answer", "")]
        if not isinstance(answers, list):
            raise ValueError(f"'answers' must be a list, got {type(answers).__name__}")
        questions.append((str(meta["question"]), [str(a) for a in answers]))
    return questions


def _pixels(items: Sequence[EvalItem], size: int) -> torch.Tensor:
    return preprocess([it.image for it in items], size)


def _image_size(model: Blip, image_size: int) -> int:
    return image_size or model.cfg.vision.image_size


@dataclass(frozen=True)
class RetrievalRun:
    metrics: dict[str, float]
    texts: list[str]  # every reference caption, item by item
    txt2img: list[int]  # each text's item
    scores_i2t: torch.Tensor  # (I, T) ITM + ITC on each image's top k texts, -100 elsewhere
    scores_t2i: torch.Tensor  # (T, I) the same for each text's top k images


def retrieval_eval(
    model: Blip,
    tokenizer: Tokenizer,
    items: Sequence[EvalItem],
    *,
    k_test: int = 16,
    image_size: int = 0,
    batch_size: int = 32,
    progress: Progress = _no_progress,
) -> dict[str, float]:
    """recall@1/5/10 image->text (txt_r*) and text->image (img_r*) over every reference caption."""
    run = retrieval_run(
        model, tokenizer, items, k_test=k_test, image_size=image_size, batch_size=batch_size, progress=progress
    )
    return run.metrics


@torch.inference_mode()
def retrieval_run(
    model: Blip,
    tokenizer: Tokenizer,
    items: Sequence[EvalItem],
    *,
    k_test: int = 16,
    image_size: int = 0,
    batch_size: int = 32,
    progress: Progress = _no_progress,
) -> RetrievalRun:
    """retrieval_eval's metrics with the texts and both score matrices."""
    size = _image_size(model, image_size)
    texts: list[str] = []
    txt2img: list[int] = []
    img2txts: list[list[int]] = []
    for i, it in enumerate(items):
        if not it.references:
            raise ValueError(f"evaluation item {it.key!r} has no caption")
        img2txts.append(list(range(len(texts), len(texts) + len(it.references))))
        texts.extend(it.references)
        txt2img.extend([i] * len(it.references))
    device = model.device
    tokens_list, embeds = [], []
    for lo in range(0, len(items), batch_size):
        pixels = _pixels(items[lo : lo + batch_size], size).to(device)
        tok = model.encode_image(pixels)
        tokens_list.append(tok)
        embeds.append(model.image_embed(tok).float().cpu())
        progress("encode images", min(lo + batch_size, len(items)), len(items))
    image_tokens = torch.cat(tokens_list)  # (I, 1+N, Dv)
    image_feat = torch.cat(embeds)  # (I, E)
    text_feat = embed_texts(model, tokenizer, texts, clean=True, max_tokens=RETRIEVAL_TEXT_TOKENS)  # (T, E)
    cleaned = [pre_caption(t, 30) for t in texts]
    ids, mask = tokenize(tokenizer, cleaned, RETRIEVAL_TEXT_TOKENS, device)
    sims = image_feat @ text_feat.t()  # (I, T) cosine, no temperature
    n_img, n_txt = sims.shape
    scores_i2t = torch.full((n_img, n_txt), -100.0)
    k_t = min(k_test, n_txt)
    for i in range(n_img):
        top_sim, top = sims[i].topk(k_t)
        logits = model.itm_logits(ids[top.to(device)], mask[top.to(device)], image_tokens[i : i + 1])
        scores_i2t[i, top] = logits[:, 1].float().cpu() + top_sim
        progress("rerank texts per image", i + 1, n_img)
    scores_t2i = torch.full((n_txt, n_img), -100.0)
    k_i = min(k_test, n_img)
    for t in range(n_txt):
        top_sim, top = sims[:, t].topk(k_i)
        rows = torch.full((k_i,), t, device=device)
        logits = model.itm_logits(ids[rows], mask[rows], image_tokens[top.to(device)])
        scores_t2i[t, top] = logits[:, 1].float().cpu() + top_sim
        progress("rerank images per text", t + 1, n_txt)
    result = recall_at_k(scores_i2t, txt2img, img2txts, scores_t2i)
    itc_only = recall_at_k(sims, txt2img, img2txts)
    result |= {f"itc_{k}": v for k, v in itc_only.items() if k.endswith(("r1", "r5", "r10"))}
    result |= {"images": float(n_img), "texts": float(n_txt), "chance_r1": 100.0 / n_img}
    return RetrievalRun(result, texts, txt2img, scores_i2t, scores_t2i)


@torch.inference_mode()
def caption_eval(
    model: Blip,
    tokenizer: Tokenizer,
    items: Sequence[EvalItem],
    *,
    generation: GenerationConfig = CAPTION_GENERATION,
    prompt: str = "a picture of ",
    image_size: int = 0,
    batch_size: int = 32,
    progress: Progress = _no_progress,
) -> tuple[dict[str, float], list[str]]:
    """(scores, captions): BLEU/ROUGE-L/CIDEr against the references; with scene graphs also the
    attribute F1, and `shuffled_f1`: the F1 of each caption against the next image's scene."""
    size = _image_size(model, image_size)
    captions: list[str] = []
    for lo in range(0, len(items), batch_size):
        pixels = _pixels(items[lo : lo + batch_size], size)
        captions.extend(c[0].text for c in caption_images(model, tokenizer, pixels, generation, prompt))
        progress("generate captions", len(captions), len(items))
    refs = {it.key: it.references for it in items if it.references}
    scores = caption_scores({it.key: c for it, c in zip(items, captions) if it.references}, refs) if refs else {}
    scenes = [it.scene for it in items]
    if all(s is not None for s in scenes) and len(items) > 1:
        graphs = [s for s in scenes if s is not None]
        f1 = corpus_scene_f1(captions, graphs)
        wrong = corpus_scene_f1(captions, graphs[1:] + graphs[:1])
        scores |= {
            "attribute_precision": f1.precision,
            "attribute_recall": f1.recall,
            "attribute_f1": f1.f1,
            "shuffled_f1": wrong.f1,
        }
    return scores, captions


@dataclass(frozen=True)
class VqaAnswer:
    item: int  # index into the items
    question: str
    given: list[str]
    predicted: str
    accuracy: float  # this question's VQA accuracy, 0-100


def vqa_eval(
    model: Blip,
    tokenizer: Tokenizer,
    items: Sequence[EvalItem],
    *,
    image_size: int = 0,
    batch_size: int = 32,
    progress: Progress = _no_progress,
    rules: VqaEvalRules = VqaEvalRules.PRE_2021,
) -> dict[str, float]:
    """Generated answers: official VQA accuracy (mean over questions, 0-100; it needs several human
    answers per question; `rules`: vqaEval.py before or since its 2021 change, evaluate/vqa.py)
    and exact match of the normalised answer against any given answer."""
    return vqa_run(
        model, tokenizer, items, image_size=image_size, batch_size=batch_size, progress=progress, rules=rules
    )[0]


@torch.inference_mode()
def vqa_run(
    model: Blip,
    tokenizer: Tokenizer,
    items: Sequence[EvalItem],
    *,
    image_size: int = 0,
    batch_size: int = 32,
    progress: Progress = _no_progress,
    rules: VqaEvalRules = VqaEvalRules.PRE_2021,
) -> tuple[dict[str, float], list[VqaAnswer]]:
    """vqa_eval's metrics and every question's answer."""
    size = _image_size(model, image_size)
    pairs = [(i, q, a) for i, it in enumerate(items) for q, a in it.questions]
    if not pairs:
        raise ValueError("no questions in the evaluation data")
    accuracy = exact = 0.0
    answered: list[VqaAnswer] = []
    for lo in range(0, len(pairs), batch_size):
        chunk = pairs[lo : lo + batch_size]
        pixels = _pixels([items[i] for i, _, _ in chunk], size)
        answers = answer_questions(model, tokenizer, pixels, [q for _, q, _ in chunk])
        for (i, question, given), predicted in zip(chunk, answers):
            score = vqa_accuracy(predicted.text, given, rules=rules)
            accuracy += score
            exact += float(normalize_answer(predicted.text) in {normalize_answer(g) for g in given})
            answered.append(VqaAnswer(i, question, given, predicted.text, 100.0 * score))
        progress("answer questions", len(answered), len(pairs))
    n = len(pairs)
    metrics = {"vqa_accuracy": 100.0 * accuracy / n, "exact_match": 100.0 * exact / n, "questions": float(n)}
    return metrics, answered
