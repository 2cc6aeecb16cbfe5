"""KeyMap rules and the strict application function, on toy modules."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from openblip.convert.keymap import POS_EMBED, CheckpointError, KeyMap, ModelKeys, match_shapes, to_ours

KMAP = KeyMap(
    format="toy",
    renames={"enc.layers.{i}.fc": "model.block.{i}.dense", "enc.norm": "model.final_ln", "scale": "logit_scale"},
    drops={r"model\.block\.\d+\.cache": "runtime cache"},
    tied={"head.weight": "model.block.0.dense.weight"},
    fills={"temp": 0.07},
)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Module()
        self.enc.layers = nn.ModuleList(nn.Module() for _ in range(2))
        for layer in self.enc.layers:
            layer.fc = nn.Linear(3, 3)
        self.enc.norm = nn.LayerNorm(3)
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.temp = nn.Parameter(torch.tensor(1.0))


def foreign() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sd = {
        f"model.block.{i}.dense.{p}": torch.randn(*((3, 3) if p == "weight" else (3,)), generator=g)
        for i in range(2)
        for p in ("weight", "bias")
    }
    sd |= {"model.final_ln.weight": torch.ones(3), "model.final_ln.bias": torch.zeros(3)}
    sd["logit_scale"] = torch.tensor(2.0)
    sd["model.block.1.cache"] = torch.zeros(5)
    sd["head.weight"] = sd["model.block.0.dense.weight"].clone()
    return sd


def test_rules_translate_with_layer_index_and_rest() -> None:
    assert KMAP.theirs("enc.layers.11.fc.weight") == "model.block.11.dense.weight"
    assert KMAP.theirs("enc.norm.bias") == "model.final_ln.bias"
    assert KMAP.theirs("scale") == "logit_scale"
    with pytest.raises(KeyError, match=re.escape("no toy name for our parameter 'enc.normx.bias'")):
        KMAP.theirs("enc.normx.bias")
    assert KMAP.drop_reason("model.block.3.cache") == "runtime cache"
    assert KMAP.drop_reason("model.block.x.cache") is None


def test_to_ours_accounts_for_every_key() -> None:
    keys = ModelKeys.of(Toy())
    state, notes = to_ours(foreign(), keys, KMAP, "toy.bin")
    assert set(state) == set(keys.shapes)
    assert torch.equal(state["enc.layers.1.fc.bias"], foreign()["model.block.1.dense.bias"])
    assert state["temp"].item() == pytest.approx(0.07)
    joined = " | ".join(notes)
    assert "temp is not stored in the toy format" in joined
    assert "dropped 1 key(s): runtime cache" in joined and "tied duplicate" in joined
    model = Toy()
    model.load_state_dict(state)  # strict


def test_missing_unexpected_and_unequal_tied_reported_together() -> None:
    sd = foreign()
    del sd["model.final_ln.bias"]
    sd["model.block.0.extra"] = torch.zeros(1)
    sd["head.weight"] = sd["head.weight"] + 1
    with pytest.raises(CheckpointError) as e:
        to_ours(sd, ModelKeys.of(Toy()), KMAP, "toy.bin")
    msg = str(e.value)
    assert msg.startswith("toy.bin: toy checkpoint does not fit the model")
    assert "missing keys: model.final_ln.bias (for enc.norm.bias)" in msg
    assert "unexpected keys: model.block.0.extra" in msg
    assert "head.weight != model.block.0.dense.weight" in msg


def test_shape_mismatch_names_both_names_and_shapes() -> None:
    sd = foreign()
    sd["model.block.1.dense.weight"] = torch.zeros(3, 4)
    want = "model.block.1.dense.weight has shape (3, 4) but the model's enc.layers.1.fc.weight needs (3, 3)"
    with pytest.raises(CheckpointError, match=re.escape(want)):
        to_ours(sd, ModelKeys.of(Toy()), KMAP, "toy.bin")


def test_long_key_lists_are_truncated() -> None:
    with pytest.raises(CheckpointError, match=r"and \d+ more"):
        match_shapes({f"k{i}": torch.zeros(1) for i in range(30)}, ModelKeys({}, {}), "x")


def test_model_keys_find_shared_tensors() -> None:
    m = nn.Module()
    m.a = nn.Linear(2, 2)
    m.b = nn.Module()
    m.b.shared = m.a
    keys = ModelKeys.of(m)
    assert set(keys.shapes) == {"a.weight", "a.bias"}
    assert keys.aliases == {"b.shared.weight": "a.weight", "b.shared.bias": "a.bias"}


def test_pos_embed_is_the_one_adaptation() -> None:
    keys = ModelKeys({POS_EMBED: (1, 1 + 6 * 6, 8), "x": (2,)}, {})
    pos = torch.randn(1, 1 + 4 * 4, 8)
    notes: list[str] = []
    out = match_shapes({POS_EMBED: pos, "x": torch.zeros(2)}, keys, "src", None, notes)
    assert out[POS_EMBED].shape == (1, 37, 8)
    assert torch.equal(out[POS_EMBED][:, 0], pos[:, 0])  # the CLS position is kept
    assert notes == [f"{POS_EMBED} resized from 16 to 36 patch positions"]
    with pytest.raises(CheckpointError, match="not a square grid"):
        match_shapes({POS_EMBED: torch.randn(1, 1 + 15, 8), "x": torch.zeros(2)}, keys, "src")
    with pytest.raises(CheckpointError, match=r"needs \(1, 37, 8\)"):  # a width change is not adapted
        match_shapes({POS_EMBED: torch.randn(1, 37, 4), "x": torch.zeros(2)}, keys, "src")
