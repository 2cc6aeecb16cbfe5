"""Fixtures for the CapFilt tests: tiny checkpoints (written once per session), a small synthetic
web split, shards with every kind of bad sample mixed in, and the CLI in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openblip.checkpoint_io import save_pretrained
from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

WEB = SynthConfig(size=SynthSize(train=1, web=12, test=1), image_size=64, web_noise=0.5, seed=5, samples_per_shard=4)


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs tiny models (tests/conftest.py)."""


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip]) -> dict[str, str]:
    """openblip-format tiny checkpoints: `full` (captions and filters), `caption`, `retrieval`."""
    root = tmp_path_factory.mktemp("bootstrap_models")
    tok = Tokenizer.default()
    return {
        "full": str(save_pretrained(tiny_blip("full", 0), tok, root / "full")),
        "caption": str(save_pretrained(tiny_blip("caption", 2), tok, root / "caption")),
        "retrieval": str(save_pretrained(tiny_blip("retrieval", 3), tok, root / "retrieval")),
    }


@pytest.fixture(scope="session")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic web split: 12 samples with `noise` labels in 3 shards of 4."""
    out = tmp_path_factory.mktemp("bootstrap_synth") / "bench"
    write_benchmark(out, WEB)
    return out / "web"


def jpeg_bytes(seed: int, size: int = 64) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# The bad samples of `mixed_dir`'s first shard, by key, and the error reason each must get.
BAD = {
    "k02": "corrupt image",
    "k03": "truncated image",
    "k04": "empty image",
    "k05": "missing image",
    "k06": "missing text",
    "k07": "non-UTF-8 text",
    "k08": "oversized image",
    "k09": "empty text",
}
MAX_PIXELS = 100 * 100  # k08 is 120 x 120


@pytest.fixture(scope="session")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mixed_dir(tmp_path_factory.mktemp("bootstrap_mixed"))


def build_mixed_dir(root: Path) -> Path:
    """a.tar: good samples with every kind of bad one mixed in; b.tar: good; c.tar: not a tar."""
    good = jpeg_bytes(1)
    members = [
        ("k00.jpg", jpeg_bytes(0)),
        ("k00.txt", b"a red circle"),
        ("k01.jpg", good),
        ("k01.txt", b"a blue square on a grey background"),
        ("k02.jpg", good[:20] + bytes(range(256)) * 4),
        ("k02.txt", b"corrupt"),
        ("k03.jpg", good[: len(good) // 2]),
        ("k03.txt", b"truncated"),
        ("k04.jpg", b""),
        ("k04.txt", b"empty"),
        ("k05.txt", b"no image at all"),
        ("k06.jpg", jpeg_bytes(6)),
        ("k07.jpg", jpeg_bytes(7)),
        ("k07.txt", b"caf\xe9 latin-1"),
        ("k08.jpg", jpeg_bytes(8, size=120)),
        ("k08.txt", b"too big"),
        ("k09.jpg", jpeg_bytes(9)),
        ("k09.txt", b"!!!"),
        ("k10.png", _png(10)),
        ("k10.txt", b"a green triangle"),
        ("k10.json", json.dumps({"noise": "clean"}).encode()),
    ]
    write_tar(root / "a.tar", members)
    good_members = [[(f"m{i}.jpg", jpeg_bytes(20 + i)), (f"m{i}.txt", f"picture {i}".encode())] for i in range(3)]
    write_tar(root / "b.tar", [m for pair in good_members for m in pair])
    (root / "c.tar").write_bytes(b"this is not a tar file at all" * 40)
    return root


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def cli() -> Callable[..., Result]:
    """`cli(*args, env={...})`: `python -m openblip bootstrap ARGS` in a subprocess."""
    base = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    base.pop("OPENBLIP_MAX_PIXELS", None)

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "openblip", "bootstrap", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**base, **(env or {})},
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
