from __future__ import annotations

import copy
import math

import pytest
import torch

from openblip.model.generate import GenerationConfig, apply_repetition_penalty
from openblip.tasks.caption import (
    BEAM_DEFAULTS,
    DEFAULT_PROMPT,
    caption_config,
    caption_images,
    decode_caption,
    prompt_ids,
    word_probs,
)

SEP = 102
SHORT = GenerationConfig(max_length=10)
SAMPLE = GenerationConfig(
    max_length=10, do_sample=True, top_p=0.9, repetition_penalty=1.1, num_return_sequences=2, seed=1
)


def test_prompt_ids_as_the_original(tokenizer) -> None:
    assert prompt_ids(tokenizer, DEFAULT_PROMPT).tolist() == [30522, 1037, 3861, 1997]
    assert prompt_ids(tokenizer, "").tolist() == [30522]
    assert prompt_ids(tokenizer, "A Photo of").tolist()[0] == 30522


def test_shapes_prompt_and_stripping(caption_model, tokenizer, pixels) -> None:
    out = caption_images(caption_model, tokenizer, pixels, SHORT)
    assert len(out) == 3 and all(len(c) == 1 for c in out)
    for (cap,) in out:
        assert list(cap.ids[:4]) == [30522, 1037, 3861, 1997]
        assert 4 < len(cap.ids) <= 10
        full = tokenizer.decode(list(cap.ids), clean_up_tokenization_spaces=True)
        assert full.startswith("a picture of") and cap.text == full[len("a picture of ") :]
    assert len({c[0].text for c in out}) > 1, "different images should get different captions"


def test_empty_prompt_starts_from_dec(caption_model, tokenizer, pixels) -> None:
    from openblip.model.generate import generate

    out = caption_images(caption_model, tokenizer, pixels, SHORT, prompt="")
    ref = generate(caption_model.text_decoder, caption_model.encode_image(pixels), torch.tensor([30522]), SHORT)
    for (cap,), seq in zip(out, ref.sequences):
        assert list(cap.ids) == [t for t in seq.tolist() if t != 0]
        assert cap.text == tokenizer.decode(list(cap.ids), clean_up_tokenization_spaces=True).strip()


def test_greedy_and_beam_deterministic_and_batch_invariant(caption_model, tokenizer, pixels) -> None:
    for cfg in (SHORT, GenerationConfig(max_length=10, num_beams=3)):
        batch = caption_images(caption_model, tokenizer, pixels, cfg)
        again = caption_images(caption_model, tokenizer, pixels, cfg)
        single = [caption_images(caption_model, tokenizer, pixels[i : i + 1], cfg)[0] for i in range(3)]
        assert [c[0].ids for c in batch] == [c[0].ids for c in again] == [c[0].ids for c in single]


def test_beam_returns_sorted_distinct_sequences(caption_model, tokenizer, pixels) -> None:
    cfg = GenerationConfig(max_length=10, num_beams=3, num_return_sequences=3)
    out = caption_images(caption_model, tokenizer, pixels, cfg)
    for caps in out:
        assert len(caps) == 3
        assert len({c.ids for c in caps}) == 3
        scores = [c.score for c in caps]
        assert scores == sorted(scores, reverse=True)
    best = caption_images(caption_model, tokenizer, pixels, GenerationConfig(max_length=10, num_beams=3))
    assert [c[0].ids for c in out] == [c[0].ids for c in best]


def test_sampling_is_seeded(caption_model, tokenizer, pixels) -> None:
    cfg = GenerationConfig(max_length=10, do_sample=True, top_p=0.9, num_return_sequences=2, seed=3)
    a = caption_images(caption_model, tokenizer, pixels, cfg)
    b = caption_images(caption_model, tokenizer, pixels, cfg)
    assert [[c.ids for c in x] for x in a] == [[c.ids for c in x] for x in b]
    other = caption_images(caption_model, tokenizer, pixels, GenerationConfig(**{**cfg.__dict__, "seed": 4}))
    assert [[c.ids for c in x] for x in a] != [[c.ids for c in x] for x in other]


def test_min_and_max_length_count_dec_and_prompt(caption_model, tokenizer, pixels) -> None:
    model = copy.deepcopy(caption_model)
    with torch.no_grad():
        model.text_decoder.head.bias[SEP] += 1000.0  # [SEP] always wins once allowed
    out = caption_images(model, tokenizer, pixels, GenerationConfig(max_length=12, min_length=7))
    for (cap,) in out:
        assert len(cap.ids) == 8 and cap.ids[-1] == SEP  # 4 prompt + 3 words, [SEP] at length 7
    out = caption_images(caption_model, tokenizer, pixels, GenerationConfig(max_length=6))
    assert all(len(c[0].ids) <= 6 for c in out)


def test_defaults_are_the_originals() -> None:
    assert (BEAM_DEFAULTS.num_beams, BEAM_DEFAULTS.max_length, BEAM_DEFAULTS.min_length) == (3, 20, 5)


def test_prompt_removed_as_the_original_cuts_it(tokenizer) -> None:
    """The original decodes the whole sequence and cuts len(prompt) characters."""
    x = tokenizer.token_to_id("##x")
    dog = tokenizer.token_to_id("dog")
    # "a picture of " + "##x" decodes to "a picture ofx" (13 characters): nothing is left
    assert decode_caption(tokenizer, torch.tensor([30522, 1037, 3861, 1997, x, 102]), "a picture of ") == ""
    assert decode_caption(tokenizer, torch.tensor([30522, 1037, 3861, 1997, x, dog, 102]), "a picture of ") == " dog"
    assert decode_caption(tokenizer, torch.tensor([30522, 1037, 3861, 1997, dog, 102]), "a picture of ") == "dog"
    # a prompt without its trailing space leaves the space, as the original
    assert decode_caption(tokenizer, torch.tensor([30522, 1037, 3861, 1997, dog]), "a picture of") == " dog"
    assert decode_caption(tokenizer, torch.tensor([30522, 1037, dog, 102]), "") == "a dog"


def test_word_probs_merge_pieces(tokenizer) -> None:
    ids = [tokenizer.token_to_id(t) for t in ("##x", "run", "##ning", "dog", "[SEP]")]
    logps = [math.log(0.5), math.log(0.8), math.log(0.5), math.log(0.9), math.log(0.7)]
    words = word_probs(tokenizer, ids, logps, SEP)
    assert [w.word for w in words] == ["x", "running", "dog"]
    assert [w.prob for w in words] == pytest.approx([0.5, 0.4, 0.9], abs=1e-12)


@pytest.mark.parametrize(
    "cfg",
    [SHORT, GenerationConfig(max_length=10, num_beams=3, num_return_sequences=2), SAMPLE],
    ids=["greedy", "beam", "nucleus"],
)
def test_word_confidence_is_the_decoders_probability(caption_model, tokenizer, pixels, cfg) -> None:
    """Each word's probability equals the decoder's on the finished caption (teacher-forced here,
    independently), its pieces multiplied; mean_logprob is the generated tokens' mean."""
    out = caption_images(caption_model, tokenizer, pixels, cfg)
    with torch.no_grad():
        tokens = caption_model.encode_image(pixels)
    for b, caps in enumerate(out):
        assert len(caps) == cfg.num_return_sequences
        for cap in caps:
            ids = torch.tensor(cap.ids)
            with torch.no_grad():
                logits = caption_model.text_decoder(ids[None, :-1], None, tokens[b : b + 1])[0].float()
            if cfg.repetition_penalty != 1.0:  # what the sampler's distribution was taken after
                logits = torch.stack(
                    [
                        apply_repetition_penalty(logits[i : i + 1], ids[None, : i + 1], cfg.repetition_penalty)[0]
                        for i in range(len(ids) - 1)
                    ]
                )
            logp = logits.log_softmax(-1)[torch.arange(3, len(ids) - 1), ids[4:]]
            # float32 summation order only (cached steps vs one pass): 1e-5 on log-probs near 1
            assert cap.mean_logprob == pytest.approx(float(logp.mean()), abs=1e-5)
            assert [w.prob for w in cap.words] == pytest.approx(
                [math.exp(float(x)) for x in _per_word(tokenizer, cap.ids[4:], logp)], abs=1e-5
            )
            if cfg.num_beams > 1 and cap.ids[-1] == SEP:  # the 4.15 score: tokens before [SEP]
                assert cap.score == pytest.approx(float(logp.sum()) / (len(cap.ids) - 1), abs=1e-5)


def _per_word(tokenizer, ids, logp) -> list[float]:
    sums: list[float] = []
    for token_id, x in zip(ids, logp.tolist()):
        if token_id == SEP:
            continue
        if tokenizer.id_to_token(token_id).startswith("##") and sums:
            sums[-1] += x
        else:
            sums.append(x)
    return sums


def test_errors(full_model, vqa_model, caption_model, tokenizer, pixels) -> None:
    from openblip.config import preset
    from openblip.model.blip import Blip

    with pytest.raises(ValueError, match="VQA"):
        caption_images(vqa_model, tokenizer, pixels, SHORT)
    with pytest.raises(ValueError, match="text decoder"):
        caption_images(Blip(preset("tiny", "retrieval")), tokenizer, pixels, SHORT)
    with pytest.raises(ValueError, match="leaves nothing"):
        caption_images(caption_model, tokenizer, pixels, GenerationConfig(max_length=4))
    with pytest.raises(ValueError, match="positions"):
        caption_images(caption_model, tokenizer, pixels, GenerationConfig(max_length=65))
    assert caption_images(full_model, tokenizer, pixels[:0], SHORT) == []


def test_caption_config_defaults() -> None:
    beam = caption_config()
    assert (beam.num_beams, beam.max_length, beam.min_length, beam.repetition_penalty) == (3, 20, 5, 1.0)
    nucleus = caption_config(sample=True)
    assert (nucleus.do_sample, nucleus.top_p, nucleus.top_k, nucleus.repetition_penalty) == (True, 0.9, 50, 1.1)
    assert caption_config(num_captions=5).num_beams == 5
    with pytest.raises(ValueError, match="num_beams must be >= 1, got 0"):
        caption_config(num_beams=0)  # not silently greedy
