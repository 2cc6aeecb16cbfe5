"""The building blocks' torch paths, and that the model's CPU-kernel choice (backends/cpu) is
what decides whether a Linear or the vision attention take a kernel."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from openblip.backends import cpu
from openblip.model import layers
from openblip.model.layers import Linear


def _kernels_on() -> cpu.CpuKernels:
    try:
        return cpu.choose("on", torch.device("cpu"), torch.float32)
    except cpu.KernelsUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("rows", [3, 40], ids=["few-rows", "many-rows"])
def test_linear_equals_f_linear_with_either_choice(rows: int) -> None:
    torch.manual_seed(0)
    lin = Linear(48, 80)
    x = torch.randn(rows, 2, 48)
    want = F.linear(x.double(), lin.weight.double(), lin.bias.double())
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))  # off: torch's op itself
        lin.cpu_kernels = _kernels_on()
        # sums of 48 products of N(0,1) x U(+-1/7) terms: ~1 in scale, fp32 rounding ~1e-7 each
        torch.testing.assert_close(lin(x).double(), want, atol=1e-5, rtol=1e-5)
    y = lin(x).sum()  # with gradients: F.linear, differentiable
    y.backward()
    assert lin.weight.grad is not None


def test_choice_survives_copy_and_pickle() -> None:
    lin = Linear(16, 16)
    lin.cpu_kernels = _kernels_on()
    for clone in (copy.deepcopy(lin), pickle.loads(pickle.dumps(lin))):
        assert clone.cpu_kernels == lin.cpu_kernels
        x = torch.randn(2, 16)
        with torch.inference_mode():
            torch.testing.assert_close(clone(x), lin(x), atol=0, rtol=0)


def test_fused_self_attention_equals_sdpa() -> None:
    qkv = torch.randn(2, 10, 3 * 32, generator=torch.Generator().manual_seed(1))
    q, k, v = qkv.double().view(2, 10, 3, 2, 16).permute(2, 0, 3, 1, 4)
    want = layers.merge_heads(torch.softmax(q @ k.transpose(-1, -2) / 4, -1) @ v)
    # softmax-weighted averages of N(0,1) values: fp32 error a few ulp of values ~1
    torch.testing.assert_close(layers.fused_self_attention(qkv, 2).double(), want, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():
        got = layers.fused_self_attention(qkv, 2, _kernels_on())
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_context_products_fall_back_to_bmm() -> None:
    """Without the kernels, or outside inference, the folded cross-attention's products are bmm."""
    g = torch.Generator().manual_seed(2)
    q, tokens, p = (
        torch.randn(2, 3, 32, generator=g),
        torch.randn(2, 5, 32, generator=g),
        torch.randn(2, 3, 5, generator=g),
    )
    for kernels in (cpu.OFF, _kernels_on()):
        assert torch.equal(layers.context_scores(q, tokens, kernels), torch.bmm(q, tokens.transpose(1, 2)))
        assert torch.equal(layers.context_mix(p, tokens, kernels), torch.bmm(p, tokens))
