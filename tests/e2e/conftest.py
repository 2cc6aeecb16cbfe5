"""End-to-end fixtures: tiny random checkpoints written once (openblip format for the full
model, a transformers directory for VQA), small images, every kind of bad input, and a helper
that runs `python -m openblip` in a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from openblip.checkpoint_io import export_hf, save_pretrained
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """In-process CLI runs use tiny models (tests/conftest.py)."""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def records(self) -> list[dict[str, Any]]:
        """stdout as JSON lines."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip]) -> dict[str, str]:
    root = tmp_path_factory.mktemp("e2e_models")
    tok = Tokenizer.default()
    return {
        "full": str(save_pretrained(tiny_blip("full", 0), tok, root / "full")),
        "vqa": str(export_hf(tiny_blip("vqa", 1), tok, root / "vqa_hf")),  # the transformers loading path
    }


def _png(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> str:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


def _jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("e2e_images")
    paths = [_png(root / "a.png", 0), _png(root / "b.png", 1)]
    (root / "c.jpg").write_bytes(_jpeg_bytes(2))
    return [*paths, str(root / "c.jpg")]


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory mixing good images with every kind of bad file (names sort in this order)."""
    root = tmp_path_factory.mktemp("e2e_bad")
    _png(root / "01_good.png", 3)
    jpeg = _jpeg_bytes(4)
    (root / "02_corrupt.jpg").write_bytes(jpeg[:20] + bytes(range(256)) * 4)
    (root / "03_empty.jpg").write_bytes(b"")
    (root / "04_huge.png").write_bytes(Path(_png(root / "tmp.png", 5, size=(300, 300))).read_bytes())
    os.remove(root / "tmp.png")
    (root / "05_notes.txt").write_text("not an image\n")
    (root / "06_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "07_good.jpg").write_bytes(jpeg)
    (root / "sub").mkdir()
    _png(root / "sub" / "08_nested.png", 6)
    (root / ".hidden.png").write_bytes(b"ignored: hidden files are skipped")
    return root


@pytest.fixture(scope="session")
def cli():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(MAX_PIXELS, None)

    def run(
        *args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None, stdin: Path | None = None
    ) -> Result:
        """`python -m openblip ARGS`; `stdin`: a file to read standard input from."""
        with open(stdin, "rb") if stdin is not None else contextlib.nullcontext() as fp:
            proc = subprocess.run(
                [sys.executable, "-m", "openblip", *args],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=cwd,
                env={**env, **(extra_env or {})},
                stdin=fp,
            )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


MAX_PIXELS = "OPENBLIP_MAX_PIXELS"
