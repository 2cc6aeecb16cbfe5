"""Visual question answering (original `BLIP_VQA`, models/blip_vqa.py).

The question (cleaned with pre_question, [ENC] first, at most 35 tokens) runs through the
image-grounded encoder over the image tokens; the answer decoder cross-attends to those
question states. Two ways to answer:

* open-ended generation (`answer_questions`): beam search from [DEC] alone; the original uses
  num_beams 3, max_length 10, min_length 1 and an all-ones question mask (so question padding
  is attended). We decode each group of equally long questions together with the states cut
  to that length, so no padding exists and the answer of a question never depends on what
  else shares its batch (identical to the original run one question at a time);
* ranking a candidate list (`rank_answers`, the original `rank_answer`, used for the paper's
  VQA numbers): one decoder step from [DEC] gives first-token probabilities; the top-k
  candidates by their first token (k_test 128) are scored by minus their label-smoothed summed
  cross-entropy (answer tokens and [SEP], padding ignored, the real question mask); the best
  score wins. The first-token probabilities are not added to the score (as the original).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from openblip.model.blip import Blip
from openblip.model.generate import GenerationConfig, generate
from openblip.model.text import lm_loss
from openblip.tasks.inputs import QUESTION_MAX_TOKENS, encode_images, require_vqa, token_limit, tokenize
from openblip.text_cleaning import pre_question
from openblip.tokenizer import Tokenizer

# The original's VQA generation: beam 3, max_length 10, min_length 1 ([DEC] counts).
VQA_GENERATION = GenerationConfig(max_length=10, min_length=1, num_beams=3)
RANK_K = 128  # the original's k_test for VQA ranking
_LOGIT_BUDGET = 1 << 26  # floats of decoder logits held at once while ranking (256 MiB in fp32)


@dataclass(frozen=True)
class Answer:
    text: str
    score: float  # generation: beam score; ranking: -(label-smoothed summed CE) of the answer
    candidate: int | None = None  # ranking: index of the answer in the candidate list


@dataclass
class QuestionStates:
    hidden: torch.Tensor  # (B, L, Dt) image-grounded question encodings
    mask: torch.Tensor  # (B, L) 1 = question token


def clean_question(question: str, index: int = 0) -> str:
    """pre_question(question); an empty result is a ValueError naming the question."""
    if not isinstance(question, str):
        raise TypeError(f"question {index} is {type(question).__name__}, expected str")
    cleaned = pre_question(question).strip()
    if not cleaned:
        raise ValueError(f"question {index} is empty ({question!r} after cleaning)")
    return cleaned


def check_answer_length(model: Blip, cfg: GenerationConfig) -> None:
    """Generation lengths the answer decoder can honour: [DEC] and at least one token, within
    its position embeddings (ValueError otherwise)."""
    if cfg.max_length < 2:
        raise ValueError(f"max_length {cfg.max_length} leaves no room for an answer after [DEC]")
    if cfg.max_length > model.cfg.text.max_positions:
        raise ValueError(f"max_length {cfg.max_length} exceeds the model's {model.cfg.text.max_positions} positions")


def encode_questions(
    model: Blip, tokenizer: Tokenizer, pixels: torch.Tensor, questions: Sequence[str]
) -> QuestionStates:
    """One question per image: grounded encoder states (B, L, Dt) and their mask."""
    require_vqa(model)
    if len(questions) != pixels.shape[0]:
        raise ValueError(f"{len(questions)} questions for {pixels.shape[0]} images")
    cleaned = [clean_question(q, i) for i, q in enumerate(questions)]
    ids, mask = tokenize(tokenizer, cleaned, token_limit(model, QUESTION_MAX_TOKENS), model.device)
    tokens = encode_images(model, pixels)
    return QuestionStates(model.grounded_hidden(ids, mask, tokens), mask)


@torch.inference_mode()
def answer_questions(
    model: Blip,
    tokenizer: Tokenizer,
    pixels: torch.Tensor,
    questions: Sequence[str],
    cfg: GenerationConfig = VQA_GENERATION,
) -> list[Answer]:
    """Open-ended answers, one per (image, question) pair of the batch."""
    return [a[0] for a in answer_questions_n(model, tokenizer, pixels, questions, cfg)]


@torch.inference_mode()
def answer_questions_n(
    model: Blip,
    tokenizer: Tokenizer,
    pixels: torch.Tensor,
    questions: Sequence[str],
    cfg: GenerationConfig = VQA_GENERATION,
) -> list[list[Answer]]:
    """cfg.num_return_sequences open-ended answers per (image, question) pair (beam search: best first)."""
    check_answer_length(model, cfg)
    if pixels.shape[0] == 0:
        return []
    states = encode_questions(model, tokenizer, pixels, questions)
    assert model.text_decoder is not None
    start = torch.tensor([tokenizer.dec_id])
    lengths = states.mask.sum(1).tolist()
    answers: list[list[Answer]] = [[] for _ in lengths]
    group = cfg.num_return_sequences
    for length in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == length]
        context = states.hidden[rows, :length]  # no padding left: the all-ones mask is exact
        out = generate(model.text_decoder, context, start, cfg)
        for j, i in enumerate(rows):
            for r in range(j * group, (j + 1) * group):  # this question's sequences, best first
                text = tokenizer.decode(out.sequences[r].cpu(), clean_up_tokenization_spaces=True).strip()
                answers[i].append(Answer(text, float(out.scores[r])))
    return answers


@torch.inference_mode()
def rank_answers(
    model: Blip,
    tokenizer: Tokenizer,
    pixels: torch.Tensor,
    questions: Sequence[str],
    candidates: Sequence[str],
    k: int = RANK_K,
) -> list[Answer]:
    """The best candidate for each (image, question), as the original's rank mode."""
    if isinstance(candidates, str) or not candidates:
        raise ValueError("candidates must be a non-empty list of answers")
    for i, answer in enumerate(candidates):
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"candidate answer {i} is empty ({answer!r})")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if pixels.shape[0] == 0:
        return []
    states = encode_questions(model, tokenizer, pixels, questions)
    assert model.text_decoder is not None
    device = model.device
    ans_ids, ans_mask = tokenize(tokenizer, candidates, model.cfg.text.max_positions, device)  # (A, La)
    ans_ids[:, 0] = tokenizer.dec_id
    k = min(k, len(candidates))
    kv = model.text_decoder.transformer.cross_kv(states.hidden, states.mask)  # once per question
    batch = states.hidden.shape[0]
    # first-token probabilities from one decoder step over [DEC]
    start = torch.full((batch, 1), tokenizer.dec_id, dtype=torch.long, device=device)
    first = model.decoder_logits(start, torch.ones_like(start), kv)[:, 0].float().softmax(-1)  # (B, V)
    top_prob, top_idx = first[:, ans_ids[:, 1]].topk(k, dim=1)  # (B, k)
    del top_prob  # the original does not add it to the score
    vocab = model.cfg.text.vocab_size
    per_chunk = max(1, _LOGIT_BUDGET // (k * ans_ids.shape[1] * vocab))
    answers: list[Answer] = []
    for lo in range(0, batch, per_chunk):
        hi = min(batch, lo + per_chunk)
        idx = top_idx[lo:hi].reshape(-1)  # (b*k,) candidates, grouped per question
        ids, mask = ans_ids[idx], ans_mask[idx]
        labels = ids.masked_fill(mask == 0, -100)
        sub_kv = kv.select(torch.arange(lo, hi, device=device))
        logits = model.decoder_logits(ids, mask, sub_kv)  # (b*k, La, V)
        loss = lm_loss(logits, labels, model.cfg.label_smoothing, per_sequence=True)
        scores = (-loss).view(hi - lo, k)
        best = scores.argmax(1)
        for row in range(hi - lo):
            c = int(top_idx[lo + row, best[row]])
            answers.append(Answer(candidates[c], float(scores[row, best[row]]), c))
    return answers
