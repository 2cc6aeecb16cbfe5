from __future__ import annotations

import pytest
import torch

from openblip.model.generate import GenerationConfig
from openblip.model.text import lm_loss
from openblip.tasks.vqa import (
    VQA_GENERATION,
    answer_questions,
    answer_questions_n,
    check_answer_length,
    clean_question,
    encode_questions,
    rank_answers,
)
from openblip.text_cleaning import pre_question

QUESTIONS = ["What is on the table?", "how many?", "Is it red"]
CANDIDATES = ["two dogs", "two cats", "yes", "no", "a red car on the street", "blue"]


def test_clean_question() -> None:
    assert clean_question("What's up?!") == "what's up?"
    with pytest.raises(ValueError, match="question 3 is empty"):
        clean_question(" .! ", 3)
    with pytest.raises(ValueError, match="empty"):
        clean_question("")


def test_encode_questions_shapes(vqa_model, tokenizer, pixels) -> None:
    states = encode_questions(vqa_model, tokenizer, pixels, QUESTIONS)
    assert states.hidden.shape[:2] == states.mask.shape and states.hidden.shape[0] == 3
    assert states.mask.sum(1).tolist() == [len(tokenizer.encode([pre_question(q)]).ids[0]) for q in QUESTIONS]


def test_generate_is_batch_invariant_and_deterministic(vqa_model, tokenizer, pixels) -> None:
    """Questions of different lengths share a batch without their padding changing the answers."""
    cfg = GenerationConfig(max_length=8, min_length=1, num_beams=3)
    batch = answer_questions(vqa_model, tokenizer, pixels, QUESTIONS, cfg)
    single = [answer_questions(vqa_model, tokenizer, pixels[i : i + 1], [q], cfg)[0] for i, q in enumerate(QUESTIONS)]
    assert [a.text for a in batch] == [a.text for a in single]
    assert [a.score for a in batch] == pytest.approx([a.score for a in single], abs=1e-4)
    assert batch == answer_questions(vqa_model, tokenizer, pixels, QUESTIONS, cfg)
    assert all(a.text for a in batch)


def test_original_generation_settings() -> None:
    assert (VQA_GENERATION.num_beams, VQA_GENERATION.max_length, VQA_GENERATION.min_length) == (3, 10, 1)


def _brute_force(model, tokenizer, pixels, question: str, candidates: list[str], k: int) -> tuple[int, float]:
    """The original's rank mode computed candidate by candidate, without batching or grouping."""
    states = encode_questions(model, tokenizer, pixels, [question])
    first, scores = [], []
    for c in candidates:
        ids, mask = tokenizer.encode([c])
        ids[:, 0] = tokenizer.dec_id
        logits = model.decoder_logits(ids, mask, states.hidden, states.mask)
        first.append(logits[0, 0].softmax(-1)[ids[0, 1]].item())
        labels = ids.masked_fill(mask == 0, -100)
        scores.append(-lm_loss(logits, labels, model.cfg.label_smoothing, per_sequence=True).item())
    top = sorted(range(len(candidates)), key=lambda i: -first[i])[:k]
    best = max(top, key=lambda i: scores[i])
    return best, scores[best]


@pytest.mark.parametrize("k", [1, 3, 128])
def test_rank_picks_the_brute_force_best(vqa_model, tokenizer, pixels, k: int) -> None:
    got = rank_answers(vqa_model, tokenizer, pixels, QUESTIONS, CANDIDATES, k=k)
    for i, q in enumerate(QUESTIONS):
        with torch.inference_mode():
            best, score = _brute_force(vqa_model, tokenizer, pixels[i : i + 1], q, CANDIDATES, k)
        assert got[i].candidate == best
        assert got[i].text == CANDIDATES[best]
        assert got[i].score == pytest.approx(score, abs=1e-4)


def test_rank_errors(vqa_model, full_model, tokenizer, pixels) -> None:
    with pytest.raises(ValueError, match="empty"):
        rank_answers(vqa_model, tokenizer, pixels, QUESTIONS, [])
    with pytest.raises(ValueError, match="question 1 is empty"):
        rank_answers(vqa_model, tokenizer, pixels[:2], ["ok", "!!"], CANDIDATES)
    with pytest.raises(ValueError, match="VQA checkpoint"):
        answer_questions(full_model, tokenizer, pixels, QUESTIONS)
    with pytest.raises(ValueError, match="2 questions for 3 images"):
        answer_questions(vqa_model, tokenizer, pixels, QUESTIONS[:2])


def test_answer_lengths_the_decoder_cannot_honour(vqa_model, tokenizer, pixels) -> None:
    check_answer_length(vqa_model, GenerationConfig(max_length=64))  # tiny: 64 positions
    for max_length, message in ((1, "no room for an answer"), (65, "exceeds the model's 64 positions")):
        cfg = GenerationConfig(max_length=max_length)
        with pytest.raises(ValueError, match=message):
            answer_questions(vqa_model, tokenizer, pixels[:0], [], cfg)  # refused even with no images


def test_rank_refuses_blank_or_str_candidates(vqa_model, tokenizer, pixels) -> None:
    with pytest.raises(ValueError, match=r"candidate answer 1 is empty \('  '\)"):
        rank_answers(vqa_model, tokenizer, pixels[:1], QUESTIONS[:1], ["yes", "  "])
    with pytest.raises(ValueError, match="non-empty list"):
        rank_answers(vqa_model, tokenizer, pixels[:1], QUESTIONS[:1], "yes")


def test_answer_questions_n_returns_each_beam_best_first(vqa_model, tokenizer, pixels) -> None:
    cfg = GenerationConfig(max_length=10, min_length=1, num_beams=3, num_return_sequences=3)
    many = answer_questions_n(vqa_model, tokenizer, pixels, QUESTIONS, cfg)
    best = answer_questions(vqa_model, tokenizer, pixels, QUESTIONS, cfg)
    assert [len(a) for a in many] == [3, 3, 3]
    assert [a[0] for a in many] == best
    assert all(a[0].score >= a[1].score >= a[2].score for a in many)
