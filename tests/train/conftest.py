"""Shared fixtures: a tiny synthetic-scenes benchmark written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train and 8 test images of 32 px."""
    out = tmp_path_factory.mktemp("scenes")
    write_benchmark(out, SynthConfig(size=SynthSize(train=16, web=0, test=8), image_size=32, seed=3))
    return out
