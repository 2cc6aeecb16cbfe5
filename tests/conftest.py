"""Fixtures shared by several test folders: tiny random BLIP models, and one torch thread for
the tests that run them.

torch and the model are imported inside the fixtures, so that test runs which need neither
(data, evaluate) do not pay for them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from openblip.threads import prefer_passive_wait

if TYPE_CHECKING:
    from openblip.model.blip import Blip

# Idle OpenMP threads sleep instead of spinning, in this process and the CLI subprocesses the
# tests start: on a busy machine spinning threads slowed model runs many times over
# (openblip/threads.py). Loaded before any test module imports torch.
TORCH_LOADED_FIRST = not prefer_passive_wait()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models: thread hand-offs cost more than the ops. Restored after each test so the
    heavy parity tests elsewhere in the session keep every core. A folder whose tests all run
    tiny models makes it autouse in its conftest; a module lists it in `pytestmark`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_blip(layout: str, seed: int) -> Blip:
    import torch

    from openblip.config import preset
    from openblip.model.blip import Blip

    torch.manual_seed(seed)
    model = Blip(preset("tiny", layout)).eval()
    # BERT init (std 0.02) gives near-uniform outputs; larger weights make images and texts matter.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.fixture(scope="module", params=["on", "off"])
def cpu_kernels_both(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs each test of a module that uses it twice, the models it loads (load_model, or
    `Blip.use_cpu_kernels(None)`) taking our CPU kernels ($OPENBLIP_CPU_KERNEL=on), then torch's
    ops (off): the path every ARM, macOS or compiler-less user gets. Module-scoped, so a
    module's shared models are loaded once per setting. "on" is skipped where the kernels
    cannot run."""
    from openblip.backends import cpu

    why = cpu.available() if request.param == "on" else None
    if why is not None:
        pytest.skip(f"the CPU kernels cannot run here: {why}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cpu.ENV, request.param)
        yield request.param


@pytest.fixture(scope="session")
def tiny_blip() -> Callable[[str, int], Blip]:
    """`tiny_blip(layout, seed)`: a new tiny model of that layout (preset "tiny"), in eval mode,
    its matrices drawn from N(0, 0.2²) with `seed`; the same arguments give the same weights."""
    return _tiny_blip


# A tiny pretraining run (ITC + ITM + LM) that trains in seconds; each test adds what it is about
# with `--set` / load_config overrides (data.train, run.out_dir, layout, objective, steps...).
TINY_TRAIN_CONFIG = """\
[model]
arch = "tiny"
layout = "pretrain"
image_size = 32
embed_dim = 16
[model.vision]
width = 32
depth = 1
heads = 2
mlp_dim = 64
[model.text]
width = 32
depth = 1
heads = 2
mlp_dim = 64
[data]
batch_size = 4
max_length = 20
augment = false
[schedule]
epochs = 1
warmup_steps = 1
[objective]
kind = "pretrain"
queue_size = 8
[run]
log_every = 1
progress = false
"""


@pytest.fixture(scope="session")
def tiny_train_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training config file (TOML) for a tiny pretraining model, batches of 4, one epoch."""
    path = tmp_path_factory.mktemp("train_config") / "tiny.toml"
    path.write_text(TINY_TRAIN_CONFIG, encoding="utf-8")
    return path


@dataclass
class Rendered:
    """What headless Chromium made of a page: the DOM after scripts ran, and a PNG screenshot."""

    dom: str
    screenshot: Path


class Browser:
    """Debian's `chromium`, headless. `render(url_or_path, out_png)` loads a page (a file path or an
    http URL), lets its scripts run for `budget_ms` of virtual time, and returns the DOM and a
    screenshot. Driving a live page (clicks, uploads) is done with the DevTools protocol by the test
    that needs it; `binary` is the executable for that."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def args(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            *extra,
        ]

    def render(
        self, page: str | Path, out_png: Path, *, width: int = 1280, height: int = 2000, budget_ms: int = 5000
    ) -> Rendered:
        url = page if isinstance(page, str) and "://" in page else Path(page).resolve().as_uri()
        common = [f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}"]
        shot = subprocess.run(
            self.args(*common, f"--screenshot={out_png}", url), capture_output=True, text=True, timeout=300
        )
        assert out_png.is_file(), f"chromium wrote no screenshot: {shot.stderr[-2000:]}"
        dom = subprocess.run(self.args(*common, "--dump-dom", url), capture_output=True, text=True, timeout=300)
        assert dom.returncode == 0, dom.stderr[-2000:]
        return Rendered(dom=dom.stdout, screenshot=out_png)


def _find_or_install_chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or not shutil.which("apt-get"):
        return found
    # The test setup installs the browser when absent (root on the project's machines).
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=900)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=1800)
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Headless Chromium, installed with apt-get when absent. Tests of HTML reports and the web page
    use it; where it cannot be had (no apt-get, not root) they fail, except with
    OPENBLIP_SKIP_BROWSER=1, which skips them (for a laptop without Debian)."""
    binary = _find_or_install_chromium()
    if binary is None:
        if os.environ.get("OPENBLIP_SKIP_BROWSER") == "1":
            pytest.skip("no chromium and OPENBLIP_SKIP_BROWSER=1")
        pytest.fail("Debian's chromium is needed for the HTML tests and could not be installed")
    return Browser(binary)
