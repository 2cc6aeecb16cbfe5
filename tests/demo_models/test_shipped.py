"""The shipped demo models: resolved by name (openblip.demo_models) by load_model, openblip.load
and every command's --model, offline, as float32; a local path of the same name wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import openblip
from openblip.checkpoint_io import layout_name, load_model, save_pretrained
from openblip.cli import main
from openblip.data.synthetic import Split, make_example, render_example
from openblip.demo_models import SHIPPED, shipped_path
from openblip.tokenizer import Tokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Tiny models: one thread is fastest and leaves the other core to the rest of the suite."""


@pytest.fixture(scope="module")
def scene_images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two scenes of a seed the models never saw, as JPEG files."""
    root = tmp_path_factory.mktemp("scenes")
    paths = []
    for i in range(2):
        example = make_example(9100, Split.TEST, i, 96)
        path = root / f"scene{i}.jpg"
        path.write_bytes(render_example(9100, example))
        paths.append(str(path))
    return paths


def test_every_name_has_its_files_in_the_package() -> None:
    for name in SHIPPED:
        path = shipped_path(name)
        assert path is not None and (path / "openblip.json").is_file() and (path / "model.safetensors").is_file()
    assert shipped_path("synthetic-other") is None


def test_package_stays_small() -> None:
    dirs = {shipped_path(n) for n in SHIPPED}
    size = sum(f.stat().st_size for d in dirs if d is not None for f in d.iterdir())
    assert size < 40e6


def test_load_by_name_gives_float32_models_of_the_right_layout() -> None:
    caption = load_model("synthetic-caption")
    assert caption.source.path == shipped_path("synthetic-caption")
    assert layout_name(caption.config) == "pretrain"
    assert {p.dtype for p in caption.model.parameters()} == {torch.float32}
    assert load_model("synthetic-filter").source.path == caption.source.path
    vqa = load_model("synthetic-vqa", dtype=torch.bfloat16)
    assert layout_name(vqa.config) == "vqa"
    assert {p.dtype for p in vqa.model.parameters()} == {torch.bfloat16}


def test_a_local_directory_of_the_same_name_wins(tiny_blip, tmp_path: Path, monkeypatch) -> None:
    save_pretrained(tiny_blip("caption", 0), Tokenizer.default(), tmp_path / "synthetic-caption")
    monkeypatch.chdir(tmp_path)
    loaded = load_model("synthetic-caption")
    assert layout_name(loaded.config) == "caption"
    assert loaded.source.path == Path("synthetic-caption")


def test_unknown_names_say_what_is_accepted() -> None:
    with pytest.raises(FileNotFoundError, match="shipped model name"):
        load_model("synthetic-captioner")


def test_python_api_works_offline(scene_images: list[str]) -> None:
    blip = openblip.load("synthetic-caption", device="cpu")
    [result] = blip.caption(scene_images[:1], prompt="a picture of ", max_length=30)
    assert result.captions[0].text.split()
    scores = blip.match(scene_images, ["a red circle", "IMG_0412.jpg"])
    assert len(scores) == 4
    vqa = openblip.load("synthetic-vqa", device="cpu")
    [answer] = vqa.answer(scene_images[0], "how many circles are there?")
    assert answer.answer.strip()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    code = main(list(args))
    out = capsys.readouterr().out
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_commands_take_the_names(capsys: pytest.CaptureFixture[str], scene_images: list[str], tmp_path: Path) -> None:
    [cap] = _run(capsys, "caption", "--model", "synthetic-caption", scene_images[0])
    assert cap["caption"]
    [ans] = _run(capsys, "vqa", scene_images[0], "--question", "is there a red circle?", "--model", "synthetic-vqa")
    assert ans["answer"]
    rows = _run(capsys, "match", *scene_images, "--text", "a blue square", "--model", "synthetic-filter")
    assert len(rows) == 2 and all(0.0 <= r["itm_score"] <= 1.0 for r in rows)
    [cls] = _run(capsys, "classify", scene_images[0], "--labels", "circle,square,star", "--model", "synthetic-filter")
    assert "error" not in cls
    index = tmp_path / "gallery"
    _run(capsys, "index", *scene_images, "--index", str(index), "--model", "synthetic-filter")
    hits = _run(capsys, "search", "--index", str(index), "--text", "a red circle", "--k", "2")
    assert hits
