from __future__ import annotations

import copy
import pickle

import pytest
import torch

from openblip.model import layers
from openblip.model.layers import Linear


def test_small_batch_path_equals_linear_and_tracks_weight_updates() -> None:
    torch.manual_seed(0)
    lin = Linear(48, 80)
    x = torch.randn(3, 2, 48)
    want = torch.nn.functional.linear(x, lin.weight, lin.bias)
    with torch.inference_mode():
        torch.testing.assert_close(lin(x), want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        lin.weight.mul_(2)  # in-place update: the packed copy must be rebuilt
    with torch.inference_mode():
        torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
    # training path (grad enabled) is plain F.linear and differentiable
    y = lin(x).sum()
    y.backward()
    assert lin.weight.grad is not None


def test_packed_cache_survives_copy_and_pickle() -> None:
    lin = Linear(16, 16)
    with torch.inference_mode():
        lin(torch.randn(2, 16))
    clone = copy.deepcopy(lin)
    again = pickle.loads(pickle.dumps(lin))
    x = torch.randn(2, 16)
    with torch.inference_mode():
        torch.testing.assert_close(clone(x), lin(x))
        torch.testing.assert_close(again(x), lin(x))


def test_model_built_in_inference_mode_takes_the_onednn_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inference tensors carry no version counter; the packed-weight cache must not trip on it
    # (it once did, silently disabling the fast path for every model built under inference_mode).
    if not torch.backends.mkldnn.is_available():
        return
    monkeypatch.setattr(layers.cpu_kernel, "load", lambda: None)  # oneDNN, not our kernel
    with torch.inference_mode():
        lin = Linear(32, 24)
        x = torch.randn(4, 32)
        got = lin(x)
        assert lin._packed.packed is not None
        assert not layers._onednn_failed
        torch.testing.assert_close(got, torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
