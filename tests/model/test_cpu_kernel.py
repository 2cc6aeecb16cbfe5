"""Our AVX2 products (few rows for decoding steps, blocked for the rest): equal to F.linear, used
by CPU fp32 inference, built once and cached, and never required (every way they can be missing
falls back to oneDNN / F.linear)."""

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
    cpu_kernel.load.cache_clear()
    yield tmp_path
    cpu_kernel.load.cache_clear()


def _kernels() -> cpu_kernel.Kernels:
    """Every kernel, the compute-bound ones included where load() leaves them to torch (an
    AVX-512 CPU): they are tested wherever they can run."""
    kernels = cpu_kernel.load()
    if kernels is None:
        pytest.skip("the kernels are not available here (no AVX2 or no C compiler)")
    if kernels.many_rows is None or kernels.attention is None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OPENBLIP_CPU_KERNEL", "all")
            kernels = cpu_kernel._bind(cpu_kernel.build())
    return kernels


@pytest.fixture()
def reload():
    """load() resolved anew (from the kernel already built), and again after the test."""
    cpu_kernel.load.cache_clear()
    yield
    cpu_kernel.load.cache_clear()


def test_compute_bound_kernels_only_where_measured(reload: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocked product and the attention kernel are AVX2 code: on an AVX-512 CPU torch's
    GEMM and SDPA run those products (unless OPENBLIP_CPU_KERNEL=all), the memory-bound
    kernels still ours; results the same."""
    _kernels()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    cpu_kernel.load.cache_clear()
    kernels = cpu_kernel.load()
    assert kernels is not None and kernels.many_rows is None and kernels.attention is None
    big = torch.randn(40, 32)
    assert cpu_kernel.pick(kernels, big, torch.randn(24, 32), None) is None
    assert cpu_kernel.pick(kernels, big[:4], torch.randn(24, 32), None) is kernels.few_rows
    lin = layers.Linear(32, 24)
    qkv = torch.randn(2, 10, 3 * 32)
    q, k, v = qkv.view(2, 10, 3, 2, 16).permute(2, 0, 3, 1, 4)
    want = layers.merge_heads(torch.softmax(q @ k.transpose(-1, -2) / 4, -1) @ v)
    with torch.inference_mode():
        torch.testing.assert_close(lin(big), torch.nn.functional.linear(big, lin.weight, lin.bias))
        torch.testing.assert_close(layers.fused_self_attention(qkv, 2), want, atol=1e-5, rtol=1e-5)
    monkeypatch.setenv("OPENBLIP_CPU_KERNEL", "all")
    cpu_kernel.load.cache_clear()
    kernels = cpu_kernel.load()
    assert kernels is not None and kernels.many_rows is not None and kernels.attention is not None


@pytest.mark.parametrize("m", [1, 2, 4, 6, 7, 12, 16])
@pytest.mark.parametrize(("k", "n"), [(8, 2), (8, 1), (64, 10), (64, 9), (768, 768), (3072, 130)])
def test_few_rows_equals_linear(m: int, k: int, n: int) -> None:
    fn = _kernels().few_rows
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    want = torch.nn.functional.linear(x, w, b)
    tol = 2e-6 * k**0.5 * 10
    torch.testing.assert_close(fn(x, w, b), want, atol=tol, rtol=1e-5)
    torch.testing.assert_close(fn(x, w, None), want - b, atol=tol, rtol=1e-5)


@pytest.mark.parametrize("m", [1, 5, 6, 17, 143, 144, 145, 600])
@pytest.mark.parametrize(("k", "n"), [(1, 1), (7, 3), (255, 17), (256, 16), (257, 33), (768, 2304), (3072, 40)])
def test_many_rows_equals_linear(m: int, k: int, n: int) -> None:
    """Every edge of the blocking: rows around the 6-row tile and 144-row block, columns around
    the 16-column panel, K around the 256 block; the bias only on the first K block."""
    fn = _kernels().many_rows
    g = torch.Generator().manual_seed(m * 100_000 + k * 100 + n)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    want = torch.nn.functional.linear(x.double(), w.double(), b.double())
    tol = 2e-6 * k**0.5 * 10
    torch.testing.assert_close(fn(x, w, b).double(), want, atol=tol, rtol=1e-5)
    torch.testing.assert_close(fn(x, w, None).double(), want - b.double(), atol=tol, rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 3, 5])
def test_kernels_with_other_thread_counts(threads: int) -> None:
    """Any thread count (the blocked product lays its threads out as a rows x columns grid)."""
    kernels = _kernels()
    g = torch.Generator().manual_seed(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for m, k, n in [(600, 70, 50), (40, 33, 300), (7, 64, 9)]:
            x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
            want = torch.nn.functional.linear(x.double(), w.double(), b.double())
            fn = kernels.few_rows if m <= cpu_kernel.MAX_ROWS else kernels.many_rows
            torch.testing.assert_close(fn(x, w, b).double(), want, atol=2e-4, rtol=1e-5)
        qkv = torch.randn(2, 13, 3 * 32, generator=g)
        q, kk, v = qkv.double().view(2, 13, 3, 2, 16).permute(2, 0, 3, 1, 4)
        want = torch.nn.functional.scaled_dot_product_attention(q, kk, v).transpose(1, 2).reshape(2, 13, -1)
        torch.testing.assert_close(kernels.attention(qkv, 2).double(), want, atol=5e-5, rtol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_inference_products_go_through_them(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _kernels()
    calls: list[tuple[str, tuple[int, ...]]] = []

    def spy(name: str) -> cpu_kernel.Product:
        def product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            calls.append((name, tuple(x.shape)))
            return getattr(real, name)(x, w, b)

        return product

    monkeypatch.setattr(
        cpu_kernel,
        "load",
        lambda: cpu_kernel.Kernels(spy("few_rows"), spy("many_rows"), real.scores, real.mix, real.attention),
    )
    lin = layers.Linear(32, 24)
    x = torch.randn(2, 3, 32)
    with torch.inference_mode():
        out = lin(x)
        big = torch.randn(40, 32)
        torch.testing.assert_close(lin(big), torch.nn.functional.linear(big, lin.weight, lin.bias))
        lin(torch.randn(3, 32)[:, ::1])
        lin(torch.randn(32, 3).t())  # not contiguous: made so
    assert calls == [
        ("few_rows", (6, 32)),
        ("many_rows", (40, 32)),
        ("few_rows", (3, 32)),
        ("few_rows", (3, 32)),
    ]
    torch.testing.assert_close(out, torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
    lin(x).sum().backward()  # training never takes them
    with torch.inference_mode():
        lin.double()(x.double())  # nor other dtypes
    assert len(calls) == 4


@pytest.mark.parametrize(("c", "r", "n", "d"), [(4, 12, 577, 768), (1, 1, 1, 16), (3, 36, 33, 32), (2, 7, 2, 64)])
def test_context_products_equal_bmm(c: int, r: int, n: int, d: int) -> None:
    kernels = _kernels()
    g = torch.Generator().manual_seed(c * 1000 + r + n + d)
    q, tokens, p = (
        torch.randn(c, r, d, generator=g),
        torch.randn(c, n, d, generator=g),
        torch.randn(c, r, n, generator=g),
    )
    tol = 2e-5 * max(n, d) ** 0.5
    with torch.inference_mode():
        torch.testing.assert_close(kernels.scores(q, tokens), torch.bmm(q, tokens.transpose(1, 2)), atol=tol, rtol=1e-5)
        torch.testing.assert_close(kernels.mix(p, tokens), torch.bmm(p, tokens), atol=tol, rtol=1e-5)
        # the dispatching helpers: our kernels for fp32 CPU inference, bmm otherwise
        want = torch.bmm(q, tokens.transpose(1, 2))
        torch.testing.assert_close(layers.context_scores(q, tokens), want, atol=tol, rtol=1e-5)
        torch.testing.assert_close(layers.context_mix(p, tokens), torch.bmm(p, tokens), atol=tol, rtol=1e-5)
    q64 = q.double()
    assert torch.equal(layers.context_scores(q64, tokens.double()), torch.bmm(q64, tokens.double().transpose(1, 2)))


@pytest.mark.parametrize(("b", "n", "heads", "hd"), [(4, 577, 12, 64), (1, 1, 1, 16), (2, 17, 3, 32), (1, 145, 16, 64)])
def test_attention_equals_sdpa(b: int, n: int, heads: int, hd: int) -> None:
    """Token counts around the 6-query groups and 16-key panels, one token, several heads."""
    kernels = _kernels()
    g = torch.Generator().manual_seed(b * 1000 + n + heads + hd)
    qkv = torch.randn(b, n, 3 * heads * hd, generator=g) * 2  # peaked softmax rows too
    q, k, v = qkv.double().view(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)
    with torch.inference_mode():
        torch.testing.assert_close(kernels.attention(qkv, heads).double(), want, atol=5e-5, rtol=1e-5)
        torch.testing.assert_close(layers.fused_self_attention(qkv, heads).double(), want, atol=5e-5, rtol=1e-5)
    # outside inference (training, other dtypes) SDPA
    torch.testing.assert_close(layers.fused_self_attention(qkv.double(), heads), want)


def test_build_is_cached(fresh: Path) -> None:
    _kernels()
    built = sorted((fresh / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    assert cpu_kernel.build() == built[0] and built[0].stat().st_mtime_ns == stamp  # no rebuild


def test_unavailable_kernel_falls_back(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CC", str(fresh / "no-such-compiler"))
    with caplog.at_level(logging.INFO, logger="openblip.model.cpu_kernel"):
        assert cpu_kernel.load() is None
    assert "not used" in caplog.text and "uses oneDNN" in caplog.text
    lin = layers.Linear(16, 8)
    x = torch.randn(3, 16)
    with torch.inference_mode():
        torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
    cpu_kernel.load.cache_clear()
    monkeypatch.delenv("CC")
    monkeypatch.setenv("OPENBLIP_CPU_KERNEL", "0")
    assert cpu_kernel.load() is None


def test_pick_checks_shapes() -> None:
    kernels = _kernels()
    w = torch.randn(6, 16)
    assert cpu_kernel.pick(kernels, torch.randn(4, 16), w, None) is kernels.few_rows
    assert cpu_kernel.pick(kernels, torch.randn(17, 16), w, None) is kernels.many_rows  # past MAX_ROWS
    assert cpu_kernel.pick(kernels, torch.randn(4, 12), torch.randn(6, 12), None) is None  # K % 8
    assert cpu_kernel.pick(kernels, torch.randn(4, 16), torch.randn(5, 16), None) is kernels.few_rows  # N odd
    assert cpu_kernel.pick(kernels, torch.randn(20, 12), torch.randn(5, 12), None) is kernels.many_rows
    assert cpu_kernel.pick(kernels, torch.randn(16, 4).t(), w, None) is None  # not contiguous
    assert cpu_kernel.pick(kernels, torch.randn(0, 16), w, None) is None  # empty
    assert cpu_kernel.pick(kernels, torch.randn(20, 16), w, torch.randn(12)[::2]) is None


def test_kernel_sources_are_package_data() -> None:
    """An installed (non-editable) package must ship every source and header the build reads."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["openblip"]
    package = root / "src" / "openblip"
    for path in cpu_kernel.SOURCES + cpu_kernel.HEADERS:
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data"
    on_disk = {p.name for p in cpu_kernel.KERNELS.iterdir() if p.suffix in (".c", ".h")}
    assert on_disk == {p.name for p in cpu_kernel.SOURCES + cpu_kernel.HEADERS}  # none left out of the build
