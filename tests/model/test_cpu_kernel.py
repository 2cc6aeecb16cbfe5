"""Our small-row AVX2 product: equal to F.linear, used by decoding steps, built once and cached,
and never required (every way it can be missing falls back to oneDNN / F.linear)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from openblip.model import cpu_kernel, layers


@pytest.fixture()
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A kernel resolved anew, built into a private cache."""
    monkeypatch.setenv("OPENBLIP_CACHE", str(tmp_path))
    cpu_kernel.product.cache_clear()
    yield tmp_path
    cpu_kernel.product.cache_clear()


def _product():
    fn = cpu_kernel.product()
    if fn is None:
        pytest.skip("the kernel is not available here (no AVX2 or no C compiler)")
    return fn


@pytest.mark.parametrize("m", [1, 2, 4, 6, 7, 12, 16])
@pytest.mark.parametrize(("k", "n"), [(8, 2), (64, 10), (768, 768), (3072, 130)])
def test_equals_linear(m: int, k: int, n: int) -> None:
    fn = _product()
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    want = torch.nn.functional.linear(x, w, b)
    tol = 2e-6 * k**0.5 * 10
    torch.testing.assert_close(fn(x, w, b), want, atol=tol, rtol=1e-5)
    torch.testing.assert_close(fn(x, w, None), want - b, atol=tol, rtol=1e-5)


def test_decoding_products_go_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fn = _product()
    calls: list[tuple[int, ...]] = []

    def spy(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return fn(x, w, b)

    monkeypatch.setattr(cpu_kernel, "product", lambda: spy)
    lin = layers.Linear(32, 24)
    x = torch.randn(2, 3, 32)
    with torch.inference_mode():
        out = lin(x)
        lin(torch.randn(40, 32))  # more than MAX_ROWS rows: oneDNN
        lin(torch.randn(3, 32)[:, ::1])
    assert calls == [(6, 32), (3, 32)]
    torch.testing.assert_close(out, torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
    lin(x).sum().backward()  # training never takes it
    assert len(calls) == 2


def test_build_is_cached(fresh: Path) -> None:
    _product()
    built = sorted((fresh / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    assert cpu_kernel.build() == built[0] and built[0].stat().st_mtime_ns == stamp  # no rebuild


def test_unavailable_kernel_falls_back(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CC", str(fresh / "no-such-compiler"))
    with caplog.at_level(logging.INFO, logger="openblip.model.cpu_kernel"):
        assert cpu_kernel.product() is None
    assert "not used" in caplog.text and "decoding uses oneDNN" in caplog.text
    lin = layers.Linear(16, 8)
    x = torch.randn(3, 16)
    with torch.inference_mode():
        torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
    cpu_kernel.product.cache_clear()
    monkeypatch.delenv("CC")
    monkeypatch.setenv("OPENBLIP_CPU_KERNEL", "0")
    assert cpu_kernel.product() is None


def test_fits_checks_shapes() -> None:
    w = torch.randn(6, 16)
    assert cpu_kernel.fits(torch.randn(4, 16), w, None)
    assert not cpu_kernel.fits(torch.randn(4, 12), torch.randn(6, 12), None)  # K % 8
    assert not cpu_kernel.fits(torch.randn(4, 16), torch.randn(5, 16), None)  # N odd
    assert not cpu_kernel.fits(torch.randn(17, 16), w, None)  # past MAX_ROWS
    assert not cpu_kernel.fits(torch.randn(16, 4).t(), w, None)  # not contiguous
