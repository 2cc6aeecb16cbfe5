"""pack(): a trained model copied into the package layout in fp16, loaded back as float32."""

from __future__ import annotations

from pathlib import Path

import torch

from openblip.checkpoint_io import load_model, save_pretrained
from openblip.convert import native
from openblip.demo_models.pack import pack
from openblip.tokenizer import Tokenizer


def test_pack_writes_fp16_and_loads_back_exactly(tiny_blip, tmp_path: Path) -> None:
    model = tiny_blip("pretrain", 0)
    src = save_pretrained(model, Tokenizer.default(), tmp_path / "trained")
    out = pack(src, tmp_path / "shipped")
    assert sorted(p.name for p in out.iterdir()) == [
        "model.safetensors",
        "openblip.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    _, stored = native.read(out)
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    # what load_model gives for a directory is what was stored; the shipped-name path casts to fp32
    back = load_model(out, dtype=torch.float32)
    expected = native.canonical_state(model)
    got = native.canonical_state(back.model)
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].dtype == torch.float32
        assert torch.equal(got[k], v.to(torch.float16).to(torch.float32)), k
    text = ["a red circle"]
    assert back.tokenizer.encode(text).ids.tolist() == Tokenizer.default().encode(text).ids.tolist()


def test_pack_replaces_an_older_copy(tiny_blip, tmp_path: Path) -> None:
    src = save_pretrained(tiny_blip("caption", 1), Tokenizer.default(), tmp_path / "trained")
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "stale.txt").write_text("old")
    out = pack(src, tmp_path / "shipped")
    assert not (out / "stale.txt").exists()
    assert not (tmp_path / "shipped.tmp").exists()
