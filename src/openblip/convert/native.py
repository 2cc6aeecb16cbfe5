"""Our own checkpoint format: a directory with

openblip.json       {"format": "openblip", "format_version": 1, "config": BlipConfig.to_dict()}
model.safetensors   every distinct tensor once, under its canonical name (the pre-training
                    arrangement's shared encoder/decoder tensors are written once)
vocab.txt, tokenizer.json, tokenizer_config.json   (Tokenizer.save)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from openblip.config import BlipConfig
from openblip.convert.keymap import CheckpointError, ModelKeys
from openblip.files import make_shareable

FORMAT = "openblip"
FORMAT_VERSION = 1
CONFIG_FILE = "openblip.json"
WEIGHTS_FILE = "model.safetensors"


def is_native(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file()


def canonical_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each distinct parameter/buffer once, under its first name (detached, contiguous)."""
    keys = ModelKeys.of(model)
    full = model.state_dict()
    return {name: full[name].detach().contiguous() for name in keys.shapes}


def write(directory: Path, cfg: BlipConfig, state: dict[str, torch.Tensor]) -> None:
    """Write openblip.json and model.safetensors (tensors moved to the CPU)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "producer": FORMAT})
    make_shareable(directory / WEIGHTS_FILE)  # save_file creates it 0600
    meta: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg.to_dict()}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read(directory: Path) -> tuple[BlipConfig, dict[str, torch.Tensor]]:
    """(config, canonical state dict) of an openblip directory."""
    path = directory / CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an openblip checkpoint description")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r} is not supported (this is version {FORMAT_VERSION})")
    try:
        cfg = BlipConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config ({e})") from e
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    try:
        state = load_file(str(weights))
    except Exception as e:  # SafetensorError
        raise CheckpointError(f"{weights}: unreadable safetensors file ({e})") from e
    return cfg, state
