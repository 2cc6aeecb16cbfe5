from __future__ import annotations

import pytest
import torch

from openblip.tasks.classify import classify_images, prepare_labels, temperature
from openblip.tasks.match import match_images_texts

LABELS = ["dog", "cat", "red car", "tree"]


def test_probabilities_are_softmax_of_itc_over_temp(full_model, tokenizer, pixels) -> None:
    labels = prepare_labels(full_model, tokenizer, LABELS)
    out = classify_images(full_model, tokenizer, pixels, labels, top_k=4)
    prompts = [f"a picture of a {label}." for label in LABELS]
    itc = match_images_texts(full_model, tokenizer, pixels, prompts).itc
    probs = (itc / temperature(full_model)).softmax(-1)
    assert temperature(full_model) == pytest.approx(0.07)
    for b, scores in enumerate(out):
        assert [s.probability for s in scores] == sorted((s.probability for s in scores), reverse=True)
        assert sum(s.probability for s in scores) == pytest.approx(1.0, abs=1e-5)
        for s in scores:
            j = LABELS.index(s.label)
            assert s.probability == pytest.approx(probs[b, j].item(), abs=1e-5)
            assert s.itc == pytest.approx(itc[b, j].item(), abs=1e-5)
    top2 = classify_images(full_model, tokenizer, pixels, labels, top_k=2)
    assert [[s.label for s in x] for x in top2] == [[s.label for s in x[:2]] for x in out]


def test_rerank_uses_itm_logit_plus_itc(full_model, tokenizer, pixels) -> None:
    labels = prepare_labels(full_model, tokenizer, LABELS)
    out = classify_images(full_model, tokenizer, pixels, labels, top_k=4, rerank=3)
    prompts = [f"a picture of a {label}." for label in LABELS]
    s = match_images_texts(full_model, tokenizer, pixels, prompts)
    for b, scores in enumerate(out):
        assert len(scores) == 3
        top3 = s.itc[b].topk(3).indices.tolist()
        assert {LABELS.index(x.label) for x in scores} == set(top3)
        combined = torch.tensor([s.itm_logit[b, j] + s.itc[b, j] for j in top3])
        probs = combined.softmax(-1)
        for x in scores:
            j = LABELS.index(x.label)
            assert x.probability == pytest.approx(probs[top3.index(j)].item(), abs=1e-5)
            assert x.itm == pytest.approx(s.itm[b, j].item(), abs=1e-5)
        assert [x.probability for x in scores] == sorted((x.probability for x in scores), reverse=True)


def test_errors(full_model, caption_model, tokenizer) -> None:
    with pytest.raises(ValueError, match="no labels"):
        prepare_labels(full_model, tokenizer, [])
    with pytest.raises(ValueError, match="label 1 is empty"):
        prepare_labels(full_model, tokenizer, ["a", " "])
    with pytest.raises(ValueError, match=r"label 1 is empty \('!!!' after cleaning\)"):
        prepare_labels(full_model, tokenizer, ["a", "!!!"])  # its prompt would be "a picture of a"
    with pytest.raises(TypeError, match="label 1 is int, expected str"):
        prepare_labels(full_model, tokenizer, ["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="template"):
        prepare_labels(full_model, tokenizer, LABELS, "a photo")
    with pytest.raises(ValueError, match="heads"):
        prepare_labels(caption_model, tokenizer, LABELS)


def test_labels_as_an_iterator_are_all_used(full_model, tokenizer, pixels) -> None:
    from_list = classify_images(full_model, tokenizer, pixels, prepare_labels(full_model, tokenizer, LABELS))
    labels = prepare_labels(full_model, tokenizer, iter(LABELS))  # was: consumed by the checks, no labels left
    assert labels.labels == LABELS and labels.embeds.shape[0] == len(LABELS)
    assert classify_images(full_model, tokenizer, pixels, labels) == from_list


def test_a_repeated_label_counts_once(full_model, tokenizer, pixels) -> None:
    once = classify_images(full_model, tokenizer, pixels, prepare_labels(full_model, tokenizer, LABELS))
    labels = prepare_labels(full_model, tokenizer, ["dog", "cat", "dog", "red car", "tree", "cat"])
    assert labels.labels == LABELS  # as the CLI: a repeat would be reported twice and split the probability
    assert classify_images(full_model, tokenizer, pixels, labels) == once
