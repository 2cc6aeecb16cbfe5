"""Acceptance: the same weights written in the original Salesforce `.pth` layout (momentum
copies, queues, position_ids buffers, duplicated tied tensors and all) load into a model that
matches transformers (tiny configs, vision LayerNorm eps 1e-6 as the original ViT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from blip_fixtures import (
    compare_caption,
    compare_retrieval,
    compare_vqa,
    hf_config,
    inputs,
    make_hf,
    salesforce_state,
    write_pth,
)
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipForQuestionAnswering

from openblip.checkpoint_io import SourceFormat, layout_name, load_model

CFG = hf_config(vision_eps=1e-6)


def test_caption_pth(tmp_path: Path) -> None:
    hf = make_hf(BlipForConditionalGeneration, CFG, 11)
    path = write_pth(tmp_path / "caption.pth", salesforce_state(hf.state_dict()))
    loaded = load_model(path)
    assert loaded.source.format is SourceFormat.SALESFORCE
    assert layout_name(loaded.config) == "caption"
    assert loaded.config.vision.layer_norm_eps == 1e-6
    assert loaded.config.label_smoothing == 0.1
    compare_caption(hf, loaded.model, inputs(64), "tiny caption .pth")


def test_retrieval_pth_with_momentum_and_queues(tmp_path: Path) -> None:
    hf = make_hf(BlipForImageTextRetrieval, CFG, 12)
    state = salesforce_state(hf.state_dict(), momentum=True, retrieval_queues=True, temp=True)
    loaded = load_model(write_pth(tmp_path / "retrieval.pth", state))
    assert layout_name(loaded.config) == "retrieval"
    assert loaded.model.temp is not None and loaded.model.temp.item() == pytest.approx(0.05)  # the file's
    notes = " | ".join(loaded.source.notes)
    for why in ("momentum encoder copy", "ITC feature queue", "queue pointer", "position_ids"):
        assert why in notes
    compare_retrieval(hf, loaded.model, inputs(64), "tiny retrieval .pth")


def test_vqa_pth(tmp_path: Path) -> None:
    hf = make_hf(BlipForQuestionAnswering, CFG, 13)
    loaded = load_model(write_pth(tmp_path / "vqa.pth", salesforce_state(hf.state_dict())))
    assert layout_name(loaded.config) == "vqa"
    assert loaded.config.decoder_over_text
    compare_vqa(hf, loaded.model, inputs(64), "tiny vqa .pth")


def _pretrain_state(itr: torch.nn.Module, cap: torch.nn.Module, *, tie: bool) -> dict[str, torch.Tensor]:
    """BLIP_Pretrain's state: encoder + heads from `itr`, decoder from `cap`. With tie=True the
    decoder's embeddings, cross-attention and feed-forward are made the encoder's tensors (as
    tie_encoder_decoder_weights does), in `cap` too so that it stays the reference."""
    if tie:
        enc = itr.text_encoder.state_dict()
        dec = cap.text_decoder.bert
        with torch.no_grad():
            for name, p in dec.named_parameters():
                if ".attention." not in f".{name}":
                    p.copy_(enc[name])
    state = {**itr.state_dict(), **{k: v for k, v in cap.state_dict().items() if k.startswith("text_decoder.")}}
    return salesforce_state(state, momentum=True, pretrain_queues=True, temp=True)


def test_pretrain_pth_loads_shared(tmp_path: Path) -> None:
    itr = make_hf(BlipForImageTextRetrieval, CFG, 14)
    cap = make_hf(BlipForConditionalGeneration, CFG, 15)
    cap.vision_model.load_state_dict(itr.vision_model.state_dict())
    loaded = load_model(write_pth(tmp_path / "pretrain.pth", _pretrain_state(itr, cap, tie=True)))
    cfg = loaded.config
    assert cfg.share_encoder_decoder and layout_name(cfg) == "pretrain"
    model = loaded.model
    assert model.text_decoder is not None and model.text_encoder is not None
    assert model.text_decoder.transformer.embeddings is model.text_encoder.embeddings
    assert model.text_decoder.transformer.blocks[1].ffn is model.text_encoder.blocks[1].ffn
    assert model.text_decoder.transformer.blocks[1].self_attn is not model.text_encoder.blocks[1].self_attn
    x = inputs(64)
    compare_retrieval(itr, model, x, "tiny pretrain .pth (ITC/ITM)")
    compare_caption(cap, model, x, "tiny pretrain .pth (decoder)")


def test_pretrain_pth_with_independent_weights_is_full(tmp_path: Path) -> None:
    itr = make_hf(BlipForImageTextRetrieval, CFG, 16)
    cap = make_hf(BlipForConditionalGeneration, CFG, 17)
    cap.vision_model.load_state_dict(itr.vision_model.state_dict())
    loaded = load_model(write_pth(tmp_path / "full.pth", _pretrain_state(itr, cap, tie=False)))
    assert not loaded.config.share_encoder_decoder and layout_name(loaded.config) == "full"
    compare_caption(cap, loaded.model, inputs(64), "tiny full .pth (decoder)")
