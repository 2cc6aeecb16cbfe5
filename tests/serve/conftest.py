"""Server fixtures: tiny checkpoints written once per session, images as bytes and data URLs,
and `start_server(*args)`, which runs `python -m openblip serve` in a subprocess on a free
loopback port and stops it (SIGTERM) when the test module ends. One server per test module."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openblip.checkpoint_io import export_hf, save_pretrained
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

pytest.importorskip("fastapi")

STARTUP_S = 180  # a loaded 2-core machine imports torch and FastAPI slowly


def png_bytes(seed: int, size: tuple[int, int] = (40, 48)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    stderr_lines: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait: the exit status (0 after a clean shutdown)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip]) -> dict[str, str]:
    root = tmp_path_factory.mktemp("serve_models")
    tok = Tokenizer.default()
    return {
        "full": str(save_pretrained(tiny_blip("full", 0), tok, root / "full")),  # captions, ITM heads: its own scorer
        "vqa": str(export_hf(tiny_blip("vqa", 1), tok, root / "vqa")),
        "caption": str(save_pretrained(tiny_blip("caption", 2), tok, root / "caption")),  # no heads
    }


@pytest.fixture(scope="session")
def gallery(tmp_path_factory: pytest.TempPathFactory, serve_models: dict[str, str]) -> Path:
    """An image index built by the "full" model, of three images (g0.png .. g2.png beside it)."""
    from openblip.api import load

    root = tmp_path_factory.mktemp("gallery")
    paths = []
    for i in range(3):
        p = root / f"g{i}.png"
        p.write_bytes(png_bytes(10 + i))
        paths.append(p)
    pipe = load(serve_models["full"])
    index = pipe.open_index(root / "index", "images")
    pipe.index_images(index, paths)
    return root / "index"


def start(*args: str) -> Server:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("OPENBLIP_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "openblip", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    server = Server(proc, "")
    # stderr is drained in the background so that a chatty server never blocks on a full pipe
    reader = threading.Thread(target=lambda: server.stderr_lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    line = _first_line(proc)
    if not line.startswith("openblip serve: http://"):
        proc.kill()
        proc.wait(30)
        reader.join(5)
        raise AssertionError(f"server did not start: {line!r}\n{server.stderr[-3000:]}")
    server.url = line.split()[2]
    return server


def _first_line(proc: subprocess.Popen[str]) -> str:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(STARTUP_S)
    return out[0] if out else ""


@pytest.fixture(scope="module")
def start_server() -> Iterator[Callable[..., Server]]:
    """`start_server(*args)`: a running server; every one started is stopped at module end."""
    started: list[Server] = []

    def run(*args: str) -> Server:
        server = start(*args)
        started.append(server)
        return server

    yield run
    for s in started:
        try:
            s.stop()
        except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait(30)
