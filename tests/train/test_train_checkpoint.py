"""Checkpoint files: atomic writes, keep-last-K, RNG state round trip, clear load errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from openblip.train import checkpoint as ckpt


def _state(step: int) -> dict[str, object]:
    return {
        "model": {"w": torch.full((2,), float(step))},
        "objective": {},
        "optimizer": {},
        "position": ckpt.DataPosition(0, step, 8 * step).to_dict(),
        "rng": [ckpt.rng_state()],
        "config": {},
    }


def test_save_keeps_the_last_k_and_finds_the_latest(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step-00000006.pt", "step-00000008.pt"]
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest is not None
    state = ckpt.load_checkpoint(latest)
    assert state["model"]["w"].tolist() == [8.0, 8.0]
    assert ckpt.DataPosition.from_dict(state["position"]) == ckpt.DataPosition(0, 8, 64)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))  # no temporary left behind


def test_no_checkpoint_yet(tmp_path: Path) -> None:
    assert ckpt.latest_checkpoint(tmp_path) is None


def test_rng_state_round_trip() -> None:
    state = ckpt.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.random(), np.random.rand(), torch.rand(1)  # move every generator on
    ckpt.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt"):
        ckpt.load_checkpoint(junk)
    partial = tmp_path / "partial.pt"
    torch.save({"model": {}}, partial)
    with pytest.raises(ValueError, match="missing 'objective'"):
        ckpt.load_checkpoint(partial)


def test_load_latest_passes_over_unreadable_checkpoints(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert ckpt.load_latest(tmp_path) is None
    for step in (2, 4, 6):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep=0)
    six = ckpt.checkpoint_dir(tmp_path) / "step-00000006.pt"
    six.write_bytes(six.read_bytes()[:1000])  # truncated behind our back (disk, copy)
    with caplog.at_level("WARNING"):
        found = ckpt.load_latest(tmp_path)
    assert found is not None and found[0].name == "step-00000004.pt"
    assert found[1]["model"]["w"].tolist() == [4.0, 4.0]
    assert "step-00000006.pt" in caplog.text
    for p in ckpt.list_checkpoints(tmp_path):
        p.write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"no readable checkpoint.*step-00000002\.pt"):
        ckpt.load_latest(tmp_path)
