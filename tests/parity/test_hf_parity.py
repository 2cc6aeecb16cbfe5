"""Acceptance: transformers' BLIP and ours on the same weights give the same numbers (tiny
configs, fp32, CPU). Weights go through `save_pretrained` and our `load_model`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from blip_fixtures import (
    assert_close,
    compare_caption,
    compare_retrieval,
    compare_vqa,
    hf_config,
    hf_vision,
    inputs,
    make_hf,
)
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipForQuestionAnswering

from openblip.checkpoint_io import SourceFormat, layout_name, load_model
from openblip.convert.fetch import is_hub_id


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    out = {}
    for name, cls, seed in (
        ("caption", BlipForConditionalGeneration, 1),
        ("retrieval", BlipForImageTextRetrieval, 2),
        ("vqa", BlipForQuestionAnswering, 3),
    ):
        model = make_hf(cls, hf_config(), seed)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = (model, path)
    return out


def test_caption_parity(hf_dirs: dict) -> None:
    hf, path = hf_dirs["caption"]
    loaded = load_model(path)
    assert loaded.source.format is SourceFormat.TRANSFORMERS
    assert layout_name(loaded.config) == "caption"
    assert loaded.config.vision.layer_norm_eps == 1e-5  # from the file, not the original's 1e-6
    assert loaded.config.text.heads == 2
    compare_caption(hf, loaded.model, inputs(64), "tiny caption")


def test_retrieval_parity(hf_dirs: dict) -> None:
    hf, path = hf_dirs["retrieval"]
    loaded = load_model(path)
    assert layout_name(loaded.config) == "retrieval"
    assert loaded.model.temp is not None and loaded.model.temp.item() == pytest.approx(0.07)
    assert any("temp" in note for note in loaded.source.notes)
    compare_retrieval(hf, loaded.model, inputs(64), "tiny retrieval")


def test_vqa_parity(hf_dirs: dict) -> None:
    hf, path = hf_dirs["vqa"]
    loaded = load_model(path)
    assert layout_name(loaded.config) == "vqa"
    compare_vqa(hf, loaded.model, inputs(64), "tiny vqa")


def test_parity_fails_on_wrong_weights(hf_dirs: dict) -> None:
    """The comparison can fail: another model's weights give different numbers."""
    hf, _ = hf_dirs["caption"]
    other = make_hf(BlipForConditionalGeneration, hf_config(), seed=99)
    with pytest.raises(AssertionError, match="max \\|delta\\|"):
        compare_caption(hf, load_model(_save(other, hf_dirs["caption"][1].parent / "other")).model, inputs(64), "x")


def _save(model: torch.nn.Module, path: Path) -> Path:
    model.save_pretrained(path)
    return path


def test_pos_embed_resized_like_interpolate_pos_encoding(hf_dirs: dict) -> None:
    hf, path = hf_dirs["caption"]
    loaded = load_model(path, image_size=96)
    assert loaded.config.vision.image_size == 96
    assert loaded.model.visual_encoder.pos_embed.shape == (1, 1 + 6 * 6, 128)
    assert any("resized from 16 to 36" in note for note in loaded.source.notes)
    x = inputs(96)
    with torch.no_grad():
        ours = loaded.model.encode_image(x.pixels)
        theirs = hf_vision(hf, x.pixels, interpolate=True)
    assert_close(ours, theirs, "tiny vision at 96 px (resized from 64)")


def test_bf16_load(hf_dirs: dict) -> None:
    _, path = hf_dirs["caption"]
    loaded = load_model(path, dtype=torch.bfloat16)
    assert loaded.model.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in loaded.model.parameters())


def test_pytorch_model_bin_with_tied_duplicates(hf_dirs: dict, tmp_path: Path) -> None:
    """Older hub directories hold pytorch_model.bin with the tied LM-head copies and position_ids."""
    hf, path = hf_dirs["caption"]
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["text_decoder.cls.predictions.decoder.weight"] = state["text_decoder.bert.embeddings.word_embeddings.weight"]
    state["text_decoder.cls.predictions.decoder.bias"] = state["text_decoder.cls.predictions.bias"]
    state["text_decoder.bert.embeddings.position_ids"] = torch.arange(64)[None]
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    compare_caption(hf, load_model(tmp_path).model, inputs(64), "tiny caption (.bin)")
    # a tied copy that differs from its twin is an error naming both keys
    state["text_decoder.cls.predictions.decoder.weight"] = state["text_decoder.cls.predictions.decoder.weight"] + 1
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=re.escape("text_decoder.cls.predictions.decoder.weight != text_decoder.bert")):
        load_model(tmp_path)


def test_hub_id_shape() -> None:
    assert is_hub_id("Salesforce/blip-vqa-base")
    assert not is_hub_id("/abs/path") and not is_hub_id("a/b/c")


def test_cross_attention_mask_semantics(hf_dirs: dict) -> None:
    """Our decoder with a padded question mask equals the decoder over the question truncated
    to its real tokens (the original med.py semantics); transformers 5.24 ignores the mask.

    If transformers starts applying the mask, the second assertion fails: then compare_vqa can
    compare padded question masks directly."""
    hf, path = hf_dirs["vqa"]
    ours = load_model(path).model
    x = inputs(64)
    q = torch.randn(2, x.mask.shape[1], 128, generator=torch.Generator().manual_seed(5))
    answers, answer_mask = x.dec_ids[:, :4], x.mask[:, :4]
    short = int(x.mask[1].sum())
    with torch.no_grad():
        masked = ours.decoder_logits(answers, answer_mask, q, x.mask)
        truncated = ours.decoder_logits(answers[1:], answer_mask[1:], q[1:, :short])
        assert (masked[1] - truncated[0]).abs().max().item() < 1e-4
        theirs_masked = hf.text_decoder(
            input_ids=answers, attention_mask=answer_mask, encoder_hidden_states=q, encoder_attention_mask=x.mask
        ).logits
        theirs_unmasked = hf.text_decoder(input_ids=answers, attention_mask=answer_mask, encoder_hidden_states=q).logits
    assert torch.equal(theirs_masked, theirs_unmasked), "transformers now applies encoder_attention_mask"


@pytest.mark.parametrize("cls", [BlipForConditionalGeneration, BlipForImageTextRetrieval])
def test_large_shape_parity(cls: type, tmp_path: Path) -> None:
    """BLIP-large's shape in miniature: the ViT wider and deeper than the text side, so
    cross-attention projects from the vision width (transformers' encoder_hidden_size)."""
    from transformers import BlipConfig

    cfg = BlipConfig(
        text_config=dict(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
            max_position_embeddings=64, encoder_hidden_size=96,
        ),
        vision_config=dict(
            hidden_size=96, num_hidden_layers=3, num_attention_heads=3, intermediate_size=384,
            image_size=64, patch_size=16, layer_norm_eps=1e-5,
        ),
    )  # fmt: skip
    hf = make_hf(cls, cfg, 5)
    hf.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert (loaded.config.vision.width, loaded.config.vision.depth, loaded.config.text.width) == (96, 3, 64)
    compare = compare_caption if cls is BlipForConditionalGeneration else compare_retrieval
    compare(hf, loaded.model, inputs(64), "large-shaped")
