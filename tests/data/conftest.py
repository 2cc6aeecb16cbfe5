"""Fixtures for the data tests: one small synthetic benchmark written once per session."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark

SMALL = SynthConfig(
    size=SynthSize(train=20, web=40, test=10), image_size=64, web_noise=0.4, seed=3, samples_per_shard=8
)


@pytest.fixture(scope="session")
def bench_config() -> SynthConfig:
    """The configuration `bench_dir` was written with."""
    return SMALL


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bench"
    write_benchmark(out, SMALL)
    return out


def _jpeg(i: int, size: tuple[int, int] = (12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (i * 20 % 256, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def jpeg() -> Callable[..., bytes]:
    """jpeg(i) -> the bytes of a small JPEG whose colour depends on i (same i, same bytes)."""
    return _jpeg
