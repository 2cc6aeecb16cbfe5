"""Shared fixtures for the task tests: tiny random models (built once per session) and images."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

# Tiny models run op by op; with several threads on a busy 2-core machine each op waits for its
# threads far longer than it computes.


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs tiny models (tests/conftest.py)."""


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.default()


@pytest.fixture(scope="session")
def full_model(tiny_blip: Callable[[str, int], Blip]) -> Blip:
    return tiny_blip("full", 0)


@pytest.fixture(scope="session")
def vqa_model(tiny_blip: Callable[[str, int], Blip]) -> Blip:
    return tiny_blip("vqa", 1)


@pytest.fixture(scope="session")
def caption_model(tiny_blip: Callable[[str, int], Blip]) -> Blip:
    return tiny_blip("caption", 2)


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))
