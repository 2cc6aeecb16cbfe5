"""Our own format: openblip.json + model.safetensors (shared tensors once) + tokenizer files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from openblip.checkpoint_io import SourceFormat, load_model, save_pretrained
from openblip.convert.keymap import CheckpointError
from openblip.convert.native import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, canonical_state
from openblip.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.default()


def test_pretrain_round_trip_writes_shared_tensors_once(tmp_path: Path, tiny_model, tokenizer) -> None:
    model = tiny_model("pretrain")
    save_pretrained(model, tokenizer, tmp_path)
    with safe_open(str(tmp_path / WEIGHTS_FILE), "pt") as f:
        keys = set(f.keys())
    assert "text_encoder.embeddings.word.weight" in keys
    assert "text_decoder.transformer.embeddings.word.weight" not in keys  # the encoder's, shared
    assert "text_decoder.transformer.layers.0.self_attn.query.weight" in keys  # not shared
    assert len(keys) == len(canonical_state(model)) < len(model.state_dict())
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["format"] == "openblip" and meta["format_version"] == FORMAT_VERSION

    loaded = load_model(tmp_path)
    assert loaded.source.format is SourceFormat.OPENBLIP and loaded.config == model.cfg
    back = loaded.model
    assert back.text_decoder is not None and back.text_encoder is not None
    assert back.text_decoder.transformer.layers[0].ffn is back.text_encoder.layers[0].ffn
    for name, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    assert loaded.tokenizer.encode(["a dog"]).ids.tolist() == tokenizer.encode(["a dog"]).ids.tolist()


def test_bad_directories(tmp_path: Path, tiny_model, tokenizer) -> None:
    save_pretrained(tiny_model("caption"), tokenizer, tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load_model(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**meta, "config": {**meta["config"], "colour": 1}}))
    with pytest.raises(CheckpointError, match="unknown BlipConfig fields"):
        load_model(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    state = canonical_state(tiny_model("caption"))
    state["stray.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=r"unexpected keys: stray\.weight"):
        load_model(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        load_model(tmp_path)


def test_image_size_override(tmp_path: Path, tiny_model, tokenizer) -> None:
    save_pretrained(tiny_model("retrieval"), tokenizer, tmp_path)
    loaded = load_model(tmp_path, image_size=32)
    assert loaded.model.visual_encoder.pos_embed.shape == (1, 5, 128)
    assert loaded.config.vision.image_size == 32
