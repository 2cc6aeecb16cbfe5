"""`openblip convert`: exit codes, the JSON summary, options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from openblip.checkpoint_io import load_model
from openblip.cli import main
from openblip.config import preset
from openblip.convert.salesforce import to_salesforce
from openblip.model import Blip


@pytest.fixture(scope="module")
def pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An original-layout captioning checkpoint (64-wide heads, so inferable from shapes)."""
    torch.manual_seed(0)
    cfg = preset("tiny", "caption")
    cfg = cfg.replace(vision=cfg.vision.__class__(**{**cfg.vision.__dict__, "heads": 1, "layer_norm_eps": 1e-6}),
                      text=cfg.text.__class__(**{**cfg.text.__dict__, "heads": 1}))  # fmt: skip
    model = Blip(cfg)
    path = tmp_path_factory.mktemp("src") / "model_caption.pth"
    torch.save({"model": to_salesforce(model.state_dict(), cfg)}, path)
    return path


def test_summary_line_and_image_size(pth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(pth), "--out", str(out), "--image-size", "32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["source_format"] == "salesforce" and summary["format"] == "openblip"
    assert summary["layout"] == "caption" and summary["image_size"] == 32
    assert summary["parameters"] == sum(p.numel() for p in load_model(out).model.parameters())
    assert any("resized" in note for note in summary["notes"])
    assert load_model(out).model.visual_encoder.pos_embed.shape[1] == 1 + 2 * 2


def test_hf_format(pth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(pth), "--out", str(tmp_path / "hf"), "--format", "hf"]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [
        "BlipForConditionalGeneration"
    ]
    assert (tmp_path / "hf" / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "x.pth"],  # no --out
        ["convert", "x.pth", "--out", "o", "--format", "onnx"],
        ["convert", "x.pth", "--out", "o", "--image-size", "0"],
        ["convert", "x.pth", "--out", "o", "--tokenizer", "/no/such/vocab.txt"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2


def test_non_empty_output_is_a_usage_error(pth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert main(["convert", str(pth), "--out", str(tmp_path)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err


def test_unusable_sources_exit_2_naming_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As in every command, an input that is not a usable model is a usage error (exit 2)."""
    assert main(["convert", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "absent.pth: no such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"visual_encoder.cls_token": torch.zeros(1, 1, 64)}}, bad)
    assert main(["convert", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "missing key visual_encoder.patch_embed.proj.weight" in capsys.readouterr().err
    texts = tmp_path / "texts.txt"
    texts.write_text("a dog\na cat\n")
    assert main(["convert", str(texts), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "texts.txt: a text file, not a model checkpoint" in err and "a Salesforce .pth file" in err
    assert not (tmp_path / "o").exists()


def test_a_failed_write_exits_1(
    pth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import openblip.checkpoint_io

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(openblip.checkpoint_io, "save_pretrained", full_disk)
    assert main(["convert", str(pth), "--out", str(tmp_path / "o")]) == 1
    assert "writing" in capsys.readouterr().err
