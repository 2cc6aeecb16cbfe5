"""Fixtures shared by several test folders: tiny random BLIP models, and one torch thread for
the tests that run them.

torch and the model are imported inside the fixtures, so that test runs which need neither
(data, evaluate) do not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from openblip.model.blip import Blip


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


@pytest.fixture(scope="session")
def tiny_blip() -> Callable[[str, int], Blip]:
    """`tiny_blip(layout, seed)`: a new tiny model of that layout (preset "tiny"), in eval mode,
    its matrices drawn from N(0, 0.2²) with `seed`; the same arguments give the same weights."""
    return _tiny_blip
