"""Shared fixtures for the task tests: tiny random models (built once per session) and images."""

from __future__ import annotations

import pytest
import torch

from openblip.config import preset
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

# Tiny models run op by op; with several threads on a busy 2-core machine each op waits for its
# threads far longer than it computes.


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: thread hand-offs cost more than the ops. Restored after each test so the
    heavy parity tests elsewhere in the session keep every core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.default()


def _tiny(layout: str, seed: int) -> Blip:
    torch.manual_seed(seed)
    model = Blip(preset("tiny", layout)).eval()
    # BERT init (std 0.02) gives near-uniform outputs; larger weights make images and texts matter.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.fixture(scope="session")
def full_model() -> Blip:
    return _tiny("full", 0)


@pytest.fixture(scope="session")
def vqa_model() -> Blip:
    return _tiny("vqa", 1)


@pytest.fixture(scope="session")
def caption_model() -> Blip:
    return _tiny("caption", 2)


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))
