"""Tiny BLIP models of every layout and their original-layout (.pth) checkpoints, built from our
own model (openblip.convert.salesforce.to_salesforce), for the loader's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from openblip.config import LAYOUTS, BlipConfig, TextConfig, VisionConfig
from openblip.convert.salesforce import to_salesforce
from openblip.model import Blip


def tiny(layout: str, **overrides: object) -> BlipConfig:
    """64-wide heads (as inferred from a .pth), vision eps 1e-6 (the original ViT)."""
    vision = VisionConfig(width=128, depth=2, heads=2, mlp_dim=256, image_size=64, layer_norm_eps=1e-6)
    text = TextConfig(width=128, depth=2, heads=2, mlp_dim=256, max_positions=64)
    return BlipConfig(vision=vision, text=text, **{**LAYOUTS[layout], **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_model() -> Callable[[str], Blip]:
    cache: dict[str, Blip] = {}

    def build(layout: str) -> Blip:
        if layout not in cache:
            torch.manual_seed(len(cache))
            cache[layout] = Blip(tiny(layout)).eval()
        return cache[layout]

    return build


@pytest.fixture
def original_state(tiny_model: Callable[[str], Blip]) -> Callable[[str], dict[str, torch.Tensor]]:
    """A fresh original-layout state dict (safe to edit) with position_ids buffers."""

    def make(layout: str) -> dict[str, torch.Tensor]:
        model = tiny_model(layout)
        state = {k: v.clone() for k, v in to_salesforce(model.state_dict(), model.cfg).items()}
        for prefix in ("text_encoder", "text_decoder.bert"):
            if f"{prefix}.embeddings.word_embeddings.weight" in state:
                state[f"{prefix}.embeddings.position_ids"] = torch.arange(64)[None]
        return state

    return make


@pytest.fixture
def write_pth(tmp_path: Path) -> Callable[[dict, str], Path]:
    def write(state: dict, name: str = "model.pth") -> Path:
        path = tmp_path / name
        torch.save({"model": state}, path)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_cfg() -> Callable[..., BlipConfig]:
    """`tiny_cfg(layout, **overrides)`: the tiny BlipConfig of a layout."""
    return tiny
