"""The original layout: config inference from shapes, strict loading, weights_only."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from openblip.checkpoint_io import layout_name, load_model
from openblip.convert.keymap import CheckpointError
from openblip.convert.salesforce import infer_config, read_checkpoint, shares_encoder_decoder
from openblip.model import Blip

LAYOUT_NAMES = ["caption", "retrieval", "vqa", "pretrain", "full"]


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_infer_config_recovers_every_layout(layout: str, tiny_model: Callable[[str], Blip], original_state) -> None:
    cfg = infer_config(original_state(layout), "x.pth")
    assert cfg == tiny_model(layout).cfg
    assert layout_name(cfg) == layout


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_load_gives_identical_weights(layout: str, tiny_model, original_state, write_pth) -> None:
    loaded = load_model(write_pth(original_state(layout)))
    want = tiny_model(layout).state_dict()
    got = loaded.model.state_dict()
    assert set(got) == set(want)
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_shared_detection_needs_every_tied_tensor(original_state) -> None:
    state = original_state("pretrain")
    assert shares_encoder_decoder(state)
    key = "text_decoder.bert.encoder.layer.1.crossattention.output.LayerNorm.bias"
    state[key] = state[key] + 1e-3
    assert not shares_encoder_decoder(state)
    assert layout_name(infer_config(state)) == "full"
    # self-attention differs between encoder and decoder in both arrangements
    assert not torch.equal(
        state["text_encoder.encoder.layer.0.attention.self.query.weight"],
        state["text_decoder.bert.encoder.layer.0.attention.self.query.weight"],
    )


def test_architecture_read_from_shapes(original_state) -> None:
    cfg = infer_config(original_state("retrieval"))
    assert (cfg.vision.width, cfg.vision.depth, cfg.vision.heads, cfg.vision.mlp_dim) == (128, 2, 2, 256)
    assert (cfg.vision.image_size, cfg.vision.patch_size, cfg.vision.layer_norm_eps) == (64, 16, 1e-6)
    assert (cfg.text.vocab_size, cfg.text.width, cfg.text.depth, cfg.text.max_positions) == (30524, 128, 2, 64)
    assert cfg.embed_dim == 256 and cfg.label_smoothing == 0.1


def test_strict_unexpected_key_is_named(original_state, write_pth) -> None:
    state = original_state("caption")
    key = "text_decoder.bert.encoder.layer.0.attention.self.extra.weight"
    state[key] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=re.escape(f"unexpected keys: {key}")):
        load_model(write_pth(state))


def test_strict_missing_key_is_named(original_state, write_pth) -> None:
    state = original_state("retrieval")
    del state["text_encoder.encoder.layer.1.output.dense.bias"]
    with pytest.raises(
        CheckpointError,
        match=re.escape("missing keys: text_encoder.encoder.layer.1.output.dense.bias "
                        "(for text_encoder.layers.1.ffn.mlp.fc2.bias)"),
    ):  # fmt: skip
        load_model(write_pth(state))


def test_strict_wrong_shape_names_key_and_shapes(original_state, write_pth) -> None:
    state = original_state("retrieval")
    state["itm_head.weight"] = torch.zeros(3, 128)
    want = "itm_head.weight has shape (3, 128) but the model's itm_head.weight needs (2, 128)"
    with pytest.raises(CheckpointError, match=re.escape(want)):
        load_model(write_pth(state))


def test_unequal_tied_copy_is_an_error(original_state, write_pth) -> None:
    state = original_state("caption")
    state["text_decoder.cls.predictions.decoder.bias"] = state["text_decoder.cls.predictions.bias"] + 1
    want = "text_decoder.cls.predictions.decoder.bias != text_decoder.cls.predictions.bias"
    with pytest.raises(CheckpointError, match=re.escape(want)):
        load_model(write_pth(state))


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused(tmp_path: Path, original_state) -> None:
    marker = tmp_path / "pwned"
    state = original_state("caption")
    path = tmp_path / "evil.pth"
    torch.save({"model": state, "config": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused or unreadable .*weights_only"):
        load_model(path)
    assert not marker.exists()


def test_bare_state_dict_and_bad_contents(tmp_path: Path, original_state) -> None:
    state = original_state("caption")
    torch.save(state, tmp_path / "bare.pth")
    assert read_checkpoint(tmp_path / "bare.pth").keys() == state.keys()
    torch.save({"model": {"a": 1}}, tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a BLIP checkpoint"):
        read_checkpoint(tmp_path / "junk.pth")
    # a checkpoint of our own training runs: pointed at what to load instead of a list of missing keys
    torch.save({"model": state, "optimizer": {}, "position": {}, "config": {}}, tmp_path / "step-00000010.pt")
    with pytest.raises(CheckpointError, match=r"step-00000010\.pt: an openblip training checkpoint.*RUN_DIR/model"):
        read_checkpoint(tmp_path / "step-00000010.pt")
    (tmp_path / "text.pth").write_text("not a zip")
    with pytest.raises(CheckpointError, match=r"text\.pth: refused or unreadable"):
        read_checkpoint(tmp_path / "text.pth")
    # a file of another kind: named, and never the unsafe "retry with weights_only=False" advice
    (tmp_path / "photo.pth").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(CheckpointError, match=r"photo\.pth: refused or unreadable .*not a pickle of tensors") as err:
        read_checkpoint(tmp_path / "photo.pth")
    assert "weights_only` set to `False`" not in str(err.value) and "will likely succeed" not in str(err.value)


def test_vqa_decoder_must_read_text_width(original_state) -> None:
    state = original_state("vqa")
    for i in range(2):
        for kv in ("key", "value"):
            state[f"text_decoder.bert.encoder.layer.{i}.crossattention.self.{kv}.weight"] = torch.zeros(128, 96)
    with pytest.raises(CheckpointError, match="cross-attention takes width 96, not the text width 128"):
        infer_config(state, "vqa.pth")


def test_gap_in_layer_indices(original_state) -> None:
    state = original_state("caption")
    for k in [k for k in state if k.startswith("visual_encoder.blocks.0.")]:
        state[k.replace("blocks.0.", "blocks.5.")] = state.pop(k)
    with pytest.raises(CheckpointError, match=r"visual_encoder\.blocks: layer indices \[1, 5\]"):
        infer_config(state)


def test_image_size_argument_resizes(original_state, write_pth) -> None:
    loaded = load_model(write_pth(original_state("caption")), image_size=96)
    assert loaded.config.vision.image_size == 96
    assert loaded.model.visual_encoder.pos_embed.shape == (1, 37, 128)
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        load_model(write_pth(original_state("caption"), "b.pth"), image_size=100)


def test_original_blip_itm_without_temp_loads(original_state, write_pth) -> None:
    """`{'model': BLIP_ITM(...).state_dict()}` has no temp (the original BLIP_ITM defines none): it
    loads with the original's initial 0.07, and the load report says so."""
    state = original_state("retrieval")
    del state["temp"]
    loaded = load_model(write_pth(state))  # saved as {'model': state}
    assert loaded.model.temp is not None and loaded.model.temp.item() == pytest.approx(0.07)
    assert any("temp is absent" in note and "0.07" in note for note in loaded.source.notes)
    state = original_state("retrieval")
    state["temp"] = torch.tensor(0.05)  # present: taken from the file
    temp = load_model(write_pth(state, "with_temp.pth")).model.temp
    assert temp is not None and temp.item() == pytest.approx(0.05)


def test_only_temp_may_be_missing(original_state, write_pth) -> None:
    state = original_state("retrieval")
    del state["temp"]
    del state["itm_head.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys: itm_head\.bias \(for itm_head\.bias\)$"):
        load_model(write_pth(state))
