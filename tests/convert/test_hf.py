"""transformers config.json <-> BlipConfig, and reading transformers weight files."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from openblip.checkpoint_io import layout_name
from openblip.convert import hf
from openblip.convert.keymap import CheckpointError


def hub_like(arch: str = "BlipForConditionalGeneration", **text: object) -> dict:
    """The shape of the released hub config.json files."""
    return {
        "architectures": [arch],
        "model_type": "blip",
        "image_text_hidden_size": 256,
        "text_config": {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12, "vocab_size": 30524,
                        "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "pad_token_id": 0, **text},
        "vision_config": {"hidden_size": 768, "num_attention_heads": 12, "image_size": 384, "patch_size": 16,
                          "layer_norm_eps": 1e-05, "intermediate_size": 3072, "num_hidden_layers": 12},
    }  # fmt: skip


def test_released_config_reads_twelve_heads_and_hub_eps() -> None:
    cfg = hf.infer_config(hub_like())
    assert cfg.text.heads == 12 and cfg.vision.heads == 12
    assert cfg.vision.layer_norm_eps == 1e-5 and cfg.text.layer_norm_eps == 1e-12
    assert cfg.vision.image_size == 384 and cfg.text.max_positions == 512
    assert layout_name(cfg) == "caption"


def test_missing_text_heads_falls_back_to_transformers_default_with_a_warning(caplog) -> None:
    config = hub_like()
    del config["text_config"]["num_attention_heads"]
    with caplog.at_level(logging.WARNING):
        cfg = hf.infer_config(config, "old/config.json")
    assert cfg.text.heads == 8  # what transformers builds from the same file
    assert "no num_attention_heads" in caplog.text and "old/config.json" in caplog.text


@pytest.mark.parametrize(
    ("arch", "layout"),
    [("BlipForConditionalGeneration", "caption"), ("BlipForQuestionAnswering", "vqa"),
     ("BlipForImageTextRetrieval", "retrieval")],
)  # fmt: skip
def test_architectures_pick_the_layout(arch: str, layout: str) -> None:
    assert layout_name(hf.infer_config(hub_like(arch))) == layout


def test_unsupported_or_wrong_configs() -> None:
    with pytest.raises(CheckpointError, match="architecture 'BlipModel' is not supported"):
        hf.infer_config(hub_like("BlipModel"))
    with pytest.raises(CheckpointError, match="model_type 'bert'"):
        hf.infer_config({**hub_like(), "model_type": "bert"})
    with pytest.raises(CheckpointError, match=r"text_config\.hidden_act 'gelu_new'"):
        hf.infer_config(hub_like(hidden_act="gelu_new"))
    with pytest.raises(CheckpointError, match="no `architectures`"):
        hf.infer_config({**hub_like(), "architectures": []})
    with pytest.raises(CheckpointError, match="width must be divisible by heads"):
        hf.infer_config(hub_like(num_attention_heads=7))


def test_missing_architectures_uses_weight_names() -> None:
    config = {**hub_like(), "architectures": None}
    assert layout_name(hf.infer_config(config, keys={"itm_head.weight", "text_encoder.x"})) == "retrieval"
    assert layout_name(hf.infer_config(config, keys={"text_encoder.x", "text_decoder.y"})) == "vqa"
    assert layout_name(hf.infer_config(config, keys={"text_decoder.y"})) == "caption"


def test_label_smoothing_rule() -> None:
    assert hf.infer_config(hub_like()).label_smoothing == 0.1  # absent (hub files): the original's
    assert hf.infer_config(hub_like(label_smoothing=0.0)).label_smoothing == 0.1  # transformers' default
    assert hf.infer_config(hub_like(label_smoothing=0.2)).label_smoothing == 0.2  # a deliberate choice


def test_image_size_as_pair() -> None:
    config = hub_like()
    config["vision_config"]["image_size"] = [480, 480]
    assert hf.infer_config(config).vision.image_size == 480
    config["vision_config"]["image_size"] = [480, 384]
    with pytest.raises(CheckpointError, match="not square"):
        hf.infer_config(config)


@pytest.mark.parametrize("layout", ["caption", "vqa", "retrieval"])
def test_export_config_round_trips(layout: str, tiny_cfg) -> None:
    cfg = tiny_cfg(layout)
    back = hf.infer_config(hf.to_hf_config(cfg))
    assert back == cfg


def test_export_config_is_read_by_transformers(tiny_cfg) -> None:
    from transformers import BlipConfig as HF

    theirs = HF.from_dict(hf.to_hf_config(tiny_cfg("vqa")))
    assert theirs.text_config.num_attention_heads == 2
    assert theirs.vision_config.layer_norm_eps == 1e-6
    assert theirs.text_config.encoder_hidden_size == 128


@pytest.mark.parametrize("layout", ["pretrain", "full"])
def test_pretraining_layouts_have_no_transformers_class(layout: str, tiny_cfg) -> None:
    with pytest.raises(ValueError, match="transformers has no class"):
        hf.architecture(tiny_cfg(layout))


def test_vqa_with_unequal_widths_cannot_be_exported(tiny_cfg) -> None:
    cfg = tiny_cfg("vqa")
    wide = cfg.replace(vision=dataclasses.replace(cfg.vision, width=256, heads=4))
    with pytest.raises(ValueError, match="vision width 256, text width 128"):
        hf.architecture(wide)


def test_read_weights_prefers_safetensors_and_follows_shards(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no weights file"):
        hf.read_weights(tmp_path)
    save_file({"a": torch.ones(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    torch.save({"c": torch.ones(1)}, tmp_path / "pytorch_model.bin")
    assert set(hf.read_weights(tmp_path)) == {"a", "b"}
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable safetensors"):
        hf.read_weights(tmp_path)
