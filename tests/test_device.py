"""openblip.device: an explicit device this machine lacks is a ValueError naming it, found
before any model is read (not a RuntimeError from the first `.to()`)."""

from __future__ import annotations

import pytest
import torch

from openblip import device
from openblip.device import resolve_device


def test_cuda_index_past_the_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"'cuda:2' requested but this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


def test_missing_cuda_and_mps_name_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda:0' requested but CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match="'mps' requested but MPS is not available"):
        resolve_device("mps")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(device, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps") == resolve_device("mps")


@pytest.mark.parametrize("name", ["meta", "xpu", "cpu:x", ""])
def test_devices_we_cannot_run_on(name: str) -> None:
    with pytest.raises(ValueError, match=repr(name)):
        resolve_device(name)


def test_a_torch_device_is_checked_as_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.device("cuda") on a machine without CUDA: the same ValueError as "cuda" (it was
    passed through, to fail in the first `.to()` with "Torch not compiled with CUDA enabled")."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda:0' requested but CUDA is not available"):
        resolve_device(torch.device("cuda", 0))
    with pytest.raises(ValueError, match="'mps' requested but MPS is not available"):
        resolve_device(torch.device("mps"))
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        resolve_device(torch.device("meta"))
