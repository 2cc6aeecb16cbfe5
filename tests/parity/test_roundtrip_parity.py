"""Round trips through `openblip convert`: transformers -> openblip -> transformers and
Salesforce -> transformers; the exports load in transformers with no missing or unexpected
keys and give the original numbers."""

from __future__ import annotations

import json
import subprocess
import sys
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

from openblip.checkpoint_io import SourceFormat, load_model
from openblip.cli import main


def _from_pretrained(cls: type, path: Path) -> torch.nn.Module:
    model, info = cls.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    return model.eval()


@torch.no_grad()
def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, x_pixels: torch.Tensor) -> None:
    assert (a.vision_model(x_pixels).last_hidden_state - b.vision_model(x_pixels).last_hidden_state).abs().max() == 0


def test_vqa_hf_to_openblip_subprocess_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hf = make_hf(BlipForQuestionAnswering, hf_config(), 21)
    hf.save_pretrained(tmp_path / "hf")
    native = tmp_path / "native"
    proc = subprocess.run(
        [sys.executable, "-m", "openblip", "convert", str(tmp_path / "hf"), "--out", str(native)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["layout"] == "vqa" and summary["format"] == "openblip"
    assert summary["source_format"] == "transformers"
    assert (native / "openblip.json").is_file() and (native / "vocab.txt").is_file()
    loaded = load_model(native)
    assert loaded.source.format is SourceFormat.OPENBLIP
    x = inputs(64)
    compare_vqa(hf, loaded.model, x, "tiny vqa via openblip format")

    back = tmp_path / "back"
    capsys.readouterr()
    assert main(["convert", str(native), "--out", str(back), "--format", "hf"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "hf"
    config = json.loads((back / "config.json").read_text())
    assert config["architectures"] == ["BlipForQuestionAnswering"]
    assert config["text_config"]["num_attention_heads"] == 2
    assert config["vision_config"]["layer_norm_eps"] == 1e-5
    exported = _from_pretrained(BlipForQuestionAnswering, back)
    compare_vqa(exported, loaded.model, x, "tiny vqa re-exported")


def test_caption_openblip_to_hf(tmp_path: Path) -> None:
    hf = make_hf(BlipForConditionalGeneration, hf_config(), 22)
    hf.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), "--out", str(tmp_path / "ob")]) == 0
    assert main(["convert", str(tmp_path / "ob"), "--out", str(tmp_path / "back"), "--format", "hf"]) == 0
    exported = _from_pretrained(BlipForConditionalGeneration, tmp_path / "back")
    x = inputs(64)
    with torch.no_grad():
        want = hf(pixel_values=x.pixels, input_ids=x.dec_ids, attention_mask=x.mask).logits
        got = exported(pixel_values=x.pixels, input_ids=x.dec_ids, attention_mask=x.mask).logits
    assert torch.equal(want, got)  # the same tensors, bit for bit


def test_salesforce_retrieval_to_hf(tmp_path: Path) -> None:
    hf = make_hf(BlipForImageTextRetrieval, hf_config(vision_eps=1e-6), 23)
    state = salesforce_state(hf.state_dict(), momentum=True, retrieval_queues=True, temp=True)
    pth = write_pth(tmp_path / "model_retrieval.pth", state)
    assert main(["convert", str(pth), "--out", str(tmp_path / "hf"), "--format", "hf"]) == 0
    exported = _from_pretrained(BlipForImageTextRetrieval, tmp_path / "hf")
    x = inputs(64)
    compare_retrieval(hf, load_model(tmp_path / "hf").model, x, "tiny retrieval .pth -> hf -> ours")
    with torch.no_grad():
        for itm in (False, True):
            ids = x.cls_ids if not itm else x.enc_ids
            a = hf(input_ids=ids, pixel_values=x.pixels, attention_mask=x.mask, use_itm_head=itm).itm_score
            b = exported(input_ids=ids, pixel_values=x.pixels, attention_mask=x.mask, use_itm_head=itm).itm_score
            assert torch.equal(a, b)


def test_full_model_exports_its_caption_or_retrieval_model_to_hf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model holding decoder, encoder and heads has no transformers class: exporting it is a
    usage error that names --task; --task caption / retrieval export the part transformers holds."""
    cap = make_hf(BlipForConditionalGeneration, hf_config(vision_eps=1e-6), 24)
    itr = make_hf(BlipForImageTextRetrieval, hf_config(vision_eps=1e-6), 25)
    cap.vision_model.load_state_dict(itr.vision_model.state_dict())
    state = {**itr.state_dict(), **{k: v for k, v in cap.state_dict().items() if k.startswith("text_decoder.")}}
    pth = write_pth(tmp_path / "pre.pth", salesforce_state(state, temp=True))
    assert main(["convert", str(pth), "--out", str(tmp_path / "hf"), "--format", "hf"]) == 2
    err = capsys.readouterr().err
    assert "transformers has no class" in err and "--task caption|retrieval" in err and "openblip format" in err
    assert not (tmp_path / "hf").exists()
    assert main(["convert", str(pth), "--out", str(tmp_path / "ob")]) == 0  # our format holds it
    compare_caption(cap, load_model(tmp_path / "ob").model, inputs(64), "tiny full via openblip format")
    x = inputs(64)
    for task, cls, reference, compare in (
        ("caption", BlipForConditionalGeneration, cap, compare_caption),
        ("retrieval", BlipForImageTextRetrieval, itr, compare_retrieval),
    ):
        out = tmp_path / f"hf_{task}"
        assert main(["convert", str(pth), "--out", str(out), "--format", "hf", "--task", task]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["layout"] == task
        exported = _from_pretrained(cls, out)
        compare(exported, load_model(tmp_path / "ob").model, x, f"full -> {task} export")
        compare(reference, load_model(out).model, x, f"{task} export read back")
