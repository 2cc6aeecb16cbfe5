from __future__ import annotations

import copy

import pytest
import torch

from openblip.model.generate import GenerationConfig
from openblip.tasks.caption import (
    BEAM_DEFAULTS,
    DEFAULT_PROMPT,
    caption_config,
    caption_images,
    decode_caption,
    prompt_ids,
)

SEP = 102
SHORT = GenerationConfig(max_length=10)


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
        assert cap.text == tokenizer.decode(list(cap.ids[4:]), clean_up_tokenization_spaces=True).strip()
        assert cap.text and not cap.text.startswith("a picture of")
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


def test_decode_caption_falls_back_when_prompt_is_not_a_prefix(tokenizer) -> None:
    ids = torch.tensor([30522, 1037, 3899, 102])  # "a dog"
    assert decode_caption(tokenizer, ids, 1) == "a dog"
    assert decode_caption(tokenizer, ids, 2) == "dog"


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
