"""Generated ids equal transformers' on the same random weights: captioning (greedy and 3 beams,
with and without the prompt) and open-ended VQA. The transformers models are saved with
save_pretrained and read back through our loader, so the key mapping is part of the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from openblip.checkpoint_io import LoadedModel, load_model  # noqa: E402
from openblip.model.generate import BeamRules, GenerationConfig  # noqa: E402
from openblip.tasks.caption import caption_images, prompt_ids  # noqa: E402
from openblip.tasks.vqa import answer_questions  # noqa: E402

# Each test runs with our CPU kernels and without (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("cpu_kernels_both")
SEP = 102
TEXT = dict(
    vocab_size=30524,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=64,
    encoder_hidden_size=64,
)
VISION = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=64, patch_size=16
)


def _randomise(model: torch.nn.Module, sep_bias: float) -> None:
    """transformers initialises the ViT with std 1e-10 (every image looks the same) and the text
    side so flat that no sequence ends: draw every weight at std 0.2 (norm gains around 1) and
    raise the [SEP] logit so that sequences end at varied lengths."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            if "norm" in name.lower() and name.endswith("weight"):
                p.add_(1.0)
        model.text_decoder.cls.predictions.bias[SEP] += sep_bias


def _until_sep(ids: list[int]) -> list[int]:
    return ids[: ids.index(SEP) + 1] if SEP in ids else ids


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _pair(cls: type, sep_bias: float, path: Path) -> tuple[torch.nn.Module, LoadedModel]:
    """A random transformers model of class `cls` (_randomise), and ours read from its save_pretrained at `path`."""
    torch.manual_seed(0)
    hf = cls(transformers.BlipConfig(text_config=TEXT, vision_config=VISION)).eval()
    _randomise(hf, sep_bias)
    hf.save_pretrained(path)
    loaded = load_model(path)
    want = os.environ["OPENBLIP_CPU_KERNEL"]  # conftest cpu_kernels_both: on, then off
    assert loaded.model.cpu_kernels.enabled == (want == "on"), loaded.model.cpu_kernels
    return hf, loaded


@pytest.fixture(scope="module")
def caption_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, LoadedModel]:
    return _pair(transformers.BlipForConditionalGeneration, 6.0, tmp_path_factory.mktemp("hf_caption"))


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("prompt", ["a picture of ", ""])
def test_caption_ids_match_transformers(caption_pair, pixels, num_beams: int, prompt: str) -> None:
    hf, ours = caption_pair
    max_length = 14
    p = prompt_ids(ours.tokenizer, prompt)
    hf_ids = torch.cat([p, torch.tensor([SEP])])[None].repeat(pixels.shape[0], 1)  # transformers drops the last
    with torch.no_grad():
        ref = hf.generate(
            pixel_values=pixels, input_ids=hf_ids, max_length=max_length, do_sample=False, num_beams=num_beams
        )
    cfg = GenerationConfig(max_length=max_length, num_beams=num_beams, beam_rules=BeamRules.TRANSFORMERS)
    got = caption_images(ours.model, ours.tokenizer, pixels, cfg, prompt)
    expected = [_until_sep(r) for r in ref.tolist()]
    assert [list(c[0].ids) for c in got] == expected
    lengths = {len(e) for e in expected}
    assert len(lengths) > 1 or num_beams == 1, "weights should give varied lengths"


def test_caption_lengths_vary(caption_pair, pixels) -> None:
    """Guard on the fixture itself: some greedy captions end early, some run to max_length."""
    _, ours = caption_pair
    got = caption_images(ours.model, ours.tokenizer, pixels, GenerationConfig(max_length=14), "a picture of ")
    ends = [c[0].ids[-1] == SEP for c in got]
    assert any(ends)
    assert len({len(c[0].ids) for c in got}) > 1


@pytest.fixture(scope="module")
def vqa_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, LoadedModel]:
    return _pair(transformers.BlipForQuestionAnswering, 4.0, tmp_path_factory.mktemp("hf_vqa"))


def test_vqa_generate_ids_match_transformers(vqa_pair, pixels) -> None:
    """Questions of different lengths in one batch: each answer equals transformers' answer to
    that question alone ([ENC] first, as the original; transformers takes the ids as given)."""
    hf, ours = vqa_pair
    tok = ours.tokenizer
    questions = ["what is it?", "how many dogs are on the beach", "color?", "is the man riding a horse", "where"]
    cfg = GenerationConfig(max_length=10, min_length=1, num_beams=3, beam_rules=BeamRules.TRANSFORMERS)
    got = answer_questions(ours.model, tok, pixels, questions, cfg)
    from openblip.text_cleaning import pre_question

    decoded = []
    for i, q in enumerate(questions):
        ids, mask = tok.encode([pre_question(q)], max_length=35)
        ids[:, 0] = tok.enc_id
        with torch.no_grad():
            ref = hf.generate(
                input_ids=ids,
                pixel_values=pixels[i : i + 1],
                attention_mask=mask,
                num_beams=3,
                max_length=10,
                min_length=1,
            )
        decoded.append(tok.decode(_until_sep(ref[0].tolist()), clean_up_tokenization_spaces=True).strip())
    assert [a.text for a in got] == decoded
    assert len(set(decoded)) > 1
