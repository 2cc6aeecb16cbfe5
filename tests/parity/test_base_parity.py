"""Acceptance at the released base size (ViT-B/16 + BERT-base, 12 heads, 384 px; VQA also at
480 px): transformers and ours on the same random weights, fp32 on the CPU.

These are the slow ones (about half a minute each on 2 cores); they run in the default suite.
Weights go through the key maps in memory (build_model) rather than through files, which the
tiny tests cover. Each test also renames the weights into the original Salesforce layout and
checks that loading those gives the identical tensors and the same architecture.
"""

from __future__ import annotations

import dataclasses

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
    salesforce_state,
)
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipForQuestionAnswering

from openblip.checkpoint_io import build_model, layout_name
from openblip.convert import hf as hf_format
from openblip.convert import salesforce
from openblip.convert.keymap import ModelKeys, to_ours
from openblip.model import Blip

pytestmark = pytest.mark.slow


def _ours(hf: torch.nn.Module) -> Blip:
    config = {**hf.config.to_dict(), "architectures": [type(hf).__name__]}
    cfg = hf_format.infer_config(config)
    assert cfg.text.heads == 12 and cfg.vision.heads == 12 and cfg.text.width == 768
    model, _ = build_model(cfg, hf.state_dict(), kmap=hf_format.KEYMAP, source=type(hf).__name__)
    model.use_cpu_kernels(None)  # as $OPENBLIP_CPU_KERNEL says: on, then off (conftest)
    return model


def _check_salesforce_layout(hf: torch.nn.Module, ours: Blip, **extras: bool) -> None:
    """The same weights in the original layout: same architecture (vision eps 1e-6 and label
    smoothing aside), identical tensors."""
    state = salesforce_state(hf.state_dict(), copy=False, **extras)
    cfg = salesforce.infer_config(state, "base .pth")
    want = ours.cfg
    assert cfg.replace(vision=want.vision, label_smoothing=want.label_smoothing) == want
    assert dataclasses.replace(cfg.vision, layer_norm_eps=want.vision.layer_norm_eps) == want.vision
    assert cfg.vision.layer_norm_eps == 1e-6
    got, _ = to_ours(state, ModelKeys.of(ours), salesforce.KEYMAP, "base .pth")
    mine = ours.state_dict()
    for name, tensor in got.items():
        if name == "temp":
            continue
        assert torch.equal(tensor, mine[name]), name


def test_base_caption_384() -> None:
    hf = make_hf(BlipForConditionalGeneration, hf_config(base=True, image_size=384), 31)
    ours = _ours(hf)
    assert layout_name(ours.cfg) == "caption"
    compare_caption(hf, ours, inputs(384), "base caption 384")
    _check_salesforce_layout(hf, ours)


def test_base_retrieval_384() -> None:
    hf = make_hf(BlipForImageTextRetrieval, hf_config(base=True, image_size=384), 32)
    ours = _ours(hf)
    compare_retrieval(hf, ours, inputs(384), "base retrieval 384")
    _check_salesforce_layout(hf, ours, momentum=False, retrieval_queues=True, temp=True)


def test_base_vqa_480_and_384() -> None:
    """A VQA model stored at 480 px (as the original VQA checkpoints): compared at 480, then fed
    384 px images (position embeddings resized bicubically, as blip-vqa-base on the hub was
    made from the 480 px original) against transformers' interpolate_pos_encoding."""
    hf = make_hf(BlipForQuestionAnswering, hf_config(base=True, image_size=480), 33)
    ours = _ours(hf)
    assert ours.cfg.vision.image_size == 480 and ours.visual_encoder.pos_embed.shape[1] == 901
    compare_vqa(hf, ours, inputs(480), "base vqa 480")
    _check_salesforce_layout(hf, ours)
    x = inputs(384, batch=1)
    with torch.no_grad():
        image = ours.encode_image(x.pixels)
        theirs = hf_vision(hf, x.pixels, interpolate=True)
        q = ours.grounded_hidden(x.cls_ids, x.mask, image)
        their_q = hf.text_encoder(input_ids=x.enc_ids, attention_mask=x.mask, encoder_hidden_states=theirs)
    assert_close(image, theirs, "base vqa 384 (resized from 480) vision")
    assert_close(q, their_q.last_hidden_state, "base vqa 384 (resized from 480) question states")


def _until_sep(rows: list[list[int]]) -> list[list[int]]:
    """transformers pads beam outputs with the eos id, we with the pad id: compare up to [SEP]."""
    return [r[: r.index(102) + 1] if 102 in r else [t for t in r if t != 0] for r in rows]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_base_generated_ids_identical(num_beams: int) -> None:
    """Greedy and 3-beam ids at the released size, with the captioning prompt, equal transformers'."""
    from openblip.model.generate import BeamRules, GenerationConfig, generate

    hf = make_hf(BlipForConditionalGeneration, hf_config(base=True, image_size=384), 37)
    ours = _ours(hf)
    assert ours.text_decoder is not None
    x = inputs(384, seed=5)
    prompt = torch.tensor([30522, 1037, 3861, 1997])  # [DEC] a picture of
    with torch.inference_mode():
        ref = hf.generate(
            pixel_values=x.pixels,
            input_ids=torch.cat([prompt, torch.tensor([102])])[None].repeat(2, 1),
            max_length=20,
            min_length=5,
            num_beams=num_beams,
            do_sample=False,
        )
        got = generate(
            ours.text_decoder,
            ours.encode_image(x.pixels),
            prompt,
            GenerationConfig(max_length=20, min_length=5, num_beams=num_beams, beam_rules=BeamRules.TRANSFORMERS),
        ).sequences
    assert _until_sep(got.tolist()) == _until_sep(ref.tolist())
    assert got.shape[1] > 6  # something was generated beyond the prompt
