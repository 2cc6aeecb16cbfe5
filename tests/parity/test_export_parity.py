"""`openblip convert --format hf` writes what transformers needs beyond the weights: the image
processor and processor configs (BlipProcessor / AutoProcessor load them and give our pixel
values), and a pre-training model (what `openblip train` writes) exports as its captioning or
its retrieval model, each giving our outputs in transformers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from blip_fixtures import compare_caption, compare_retrieval, inputs
from PIL import Image
from transformers import AutoProcessor, BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipProcessor

from openblip.checkpoint_io import export_hf, save_pretrained
from openblip.cli import main
from openblip.image import load_image, preprocess
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def pretrained(
    cpu_kernels_both: str, tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip]
) -> tuple[Blip, Path]:
    """A tiny pre-training-layout model (decoder sharing the encoder's layers) in our format,
    taking the CPU kernels or not as this run of the module asks (conftest)."""
    model = tiny_blip("pretrain", 7)
    model.use_cpu_kernels(None)
    return model, save_pretrained(model, Tokenizer.default(), tmp_path_factory.mktemp("pretrain") / "model")


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 255, (30, 70, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 255, (90, 50, 4), dtype=np.uint8), "RGBA")
    gradient = Image.fromarray(np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1)), "L")
    return [wide, rgba, gradient]


def test_processor_loads_and_gives_our_pixels(tmp_path: Path, tiny_blip: Callable[[str, int], Blip]) -> None:
    out = export_hf(tiny_blip("caption", 3), Tokenizer.default(), tmp_path / "hf")
    config = json.loads((out / "preprocessor_config.json").read_text())
    assert config["size"] == {"height": 64, "width": 64} and config["resample"] == 3  # bicubic
    for loader in (AutoProcessor, BlipProcessor):
        processor = loader.from_pretrained(out)
        assert type(processor).__name__ == "BlipProcessor"
        # our load_image first (EXIF, alpha on white, RGB): the processor then sees what we do
        images = [load_image(im) for im in _images()]
        theirs = processor(images=images, return_tensors="pt")["pixel_values"]
        ours = preprocess(images, 64)
        assert theirs.shape == ours.shape == (3, 3, 64, 64)
        # both resize with PIL's bicubic to uint8 and normalise; only float rounding differs
        assert (theirs - ours).abs().max().item() < 1e-5
        ids = processor(text=["a dog"], return_tensors="pt")["input_ids"][0].tolist()
        assert ids == Tokenizer.default().encode(["a dog"]).ids[0].tolist()


def _export(src: Path, out: Path, task: str) -> Path:
    assert main(["convert", str(src), "--out", str(out), "--format", "hf", "--task", task]) == 0
    return out


def _from_pretrained(cls: type, path: Path) -> torch.nn.Module:
    model, info = cls.from_pretrained(path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    return model.eval()


def test_pretrain_model_exports_as_captioning_model(pretrained, tmp_path: Path, capsys) -> None:
    model, src = pretrained
    out = _export(src, tmp_path / "cap", "caption")
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == "caption" and summary["format"] == "hf"
    hf = _from_pretrained(BlipForConditionalGeneration, out)
    compare_caption(hf, model, inputs(64), "pretrain -> caption export")
    assert oct((out / "model.safetensors").stat().st_mode & 0o777) == "0o644"


def test_pretrain_model_exports_as_retrieval_model(pretrained, tmp_path: Path) -> None:
    model, src = pretrained
    hf = _from_pretrained(BlipForImageTextRetrieval, _export(src, tmp_path / "itm", "retrieval"))
    compare_retrieval(hf, model, inputs(64), "pretrain -> retrieval export")


def test_pretrain_export_without_task_is_a_usage_error(pretrained, tmp_path: Path, capsys) -> None:
    _, src = pretrained
    assert main(["convert", str(src), "--out", str(tmp_path / "x"), "--format", "hf"]) == 2
    assert "--task caption|retrieval" in capsys.readouterr().err and not (tmp_path / "x").exists()
