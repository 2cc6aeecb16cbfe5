"""The released checkpoint layouts work as captioner and filter: transformers caption + ITM
directories, original Salesforce .pth files; the same weights give the same rows in any format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from openblip.bootstrap import BootstrapConfig, bootstrap
from openblip.checkpoint_io import export_hf, save_pretrained
from openblip.config import preset
from openblip.convert.salesforce import to_salesforce
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

from .test_pipeline import assert_same_rows, rows


def _model(layout: str, seed: int) -> Blip:
    """Tiny, with 64-wide attention heads (a .pth's head count is inferred from the widths)."""
    cfg = preset("tiny", layout)
    cfg = cfg.replace(
        vision=dataclasses.replace(cfg.vision, heads=1, layer_norm_eps=1e-6),
        text=dataclasses.replace(cfg.text, heads=1),
    )
    torch.manual_seed(seed)
    model = Blip(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("released")
    tok = Tokenizer.default()
    cap, itm = _model("caption", 11), _model("retrieval", 12)
    paths = {
        "hf_caption": export_hf(cap, tok, root / "blip-image-captioning"),
        "hf_itm": export_hf(itm, tok, root / "blip-itm"),
        "ours_caption": save_pretrained(cap, tok, root / "ours_caption"),
        "ours_itm": save_pretrained(itm, tok, root / "ours_itm"),
    }
    for name, model in (("pth_caption", cap), ("pth_itm", itm)):
        paths[name] = root / f"model_base_{name}.pth"
        torch.save({"model": to_salesforce(model.state_dict(), model.cfg)}, paths[name])
    return {k: str(v) for k, v in paths.items()}


def test_released_layouts_as_captioner_and_filter(released: dict[str, str], web_dir: Path, tmp_path: Path) -> None:
    shard = str(web_dir / "00000.tar")
    outs = {}
    for fmt in ("ours", "hf", "pth"):
        cfg = BootstrapConfig(
            out=str(tmp_path / fmt),
            captioner=released[f"{fmt}_caption"],
            filter=released[f"{fmt}_itm"],
            device="cpu",
            workers=0,
            batch_size=4,
        )
        result = bootstrap(cfg, [shard])
        assert result.exit_code == 0 and result.stats["samples"] == 4
        outs[fmt] = rows(tmp_path / fmt)
        assert all(r["error"] is None and len(r["synthetic_texts"]) == 1 for r in outs[fmt])
    assert_same_rows(outs["hf"], outs["ours"])
    assert_same_rows(outs["pth"], outs["ours"])
