"""`openblip serve` usage errors: said before any port is opened, exit code 2, naming the flag."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from openblip.checkpoint_io import save_pretrained
from openblip.cli import main
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

pytest.importorskip("fastapi")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip]) -> dict[str, str]:
    root = tmp_path_factory.mktemp("serve_cli")
    tok = Tokenizer.default()
    return {
        "full": str(save_pretrained(tiny_blip("full", 0), tok, root / "full")),
        "caption": str(save_pretrained(tiny_blip("caption", 2), tok, root / "caption")),
    }


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["serve", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--max-batch", "0"], "max_batch must be >= 1"),
        (["--max-queue", "0"], "max_queue"),
        (["--low-score", "2"], "low_score"),
        (["--max-pixels", "0"], "--max-pixels"),
        (["--port", "70000"], "--port 70000"),
        (["--scorer", "CAPTION"], "no ITM head"),
        (["--reference", "MISSING"], "--reference"),
        (["--index", "MISSING"], "--index"),
        (["--device", "cuda:7"], "--device"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], models: dict[str, str], tmp_path: Path, args: list[str], words: str
) -> None:
    args = [models["caption"] if a == "CAPTION" else str(tmp_path / "nothing") if a == "MISSING" else a for a in args]
    code, err = _run(capsys, "--model", models["full"], "--port", "0", *args)
    assert code == 2 and words in err, err


def test_reference_folder_needs_a_captioner_and_a_scorer_and_images(
    capsys: pytest.CaptureFixture[str], models: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    code, err = _run(capsys, "--model", models["full"], "--port", "0", "--reference", str(tmp_path))
    assert code == 2 and "no image files" in err
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code, err = _run(capsys, "--model", models["full"], "--port", "0", "--reference", str(tmp_path))
    assert code == 2 and "needs a captioning --model and a --scorer" in err


def test_missing_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _run(capsys, "--model", str(tmp_path / "none"), "--port", "0")
    assert code == 2 and "cannot load model" in err


def test_index_of_another_model(capsys: pytest.CaptureFixture[str], models: dict[str, str], tmp_path: Path) -> None:
    from openblip.api import load

    other = load(models["full"])
    index = other.open_index(tmp_path / "idx", "texts")
    other.index_texts(index, ["a dog"])
    code, err = _run(capsys, "--model", models["caption"], "--port", "0", "--index", str(tmp_path / "idx"))
    assert code == 2 and "not by --model or --scorer" in err


def test_registering_serve_imports_no_server_nor_model() -> None:
    """`openblip --help` must not pay for FastAPI, uvicorn or torch because serve is a command."""
    import json
    import subprocess
    import sys

    code = (
        "import argparse, json, sys; from openblip.cli import serve_cmd; "
        "serve_cmd.register(argparse.ArgumentParser().add_subparsers()); "
        "print(json.dumps([m for m in ('torch', 'fastapi', 'uvicorn', 'openblip.serve.app') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == []
