"""The kernels as torch ops (torch.ops.openblip.*): equal to torch's products up to float
summation order, on every edge of their blocking and at any thread count; shape errors are
Python exceptions naming the shapes, in the real and the fake (tracing) implementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from openblip.backends.cpu import build

ops = torch.ops.openblip


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    why = build.available()
    if why is not None:
        pytest.skip(f"the kernels cannot run here: {why}")


def _tol(k: int) -> float:
    """fp32 products of K terms of N(0, 1) values against a float64 reference: each rounding
    is <= 2^-24 relative, the error grows like sqrt(K) times the result's scale (~sqrt(K))."""
    return 2e-6 * k**0.5 * 10


@pytest.mark.parametrize("m", [1, 2, 4, 6, 7, 12, 16])
@pytest.mark.parametrize(("k", "n"), [(8, 2), (8, 1), (64, 10), (64, 9), (768, 768), (3072, 130)])
def test_small_linear_equals_linear(m: int, k: int, n: int) -> None:
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    want = F.linear(x.double(), w.double(), b.double())
    torch.testing.assert_close(ops.small_linear(x, w, b).double(), want, atol=_tol(k), rtol=1e-5)
    torch.testing.assert_close(ops.small_linear(x, w, None).double(), want - b.double(), atol=_tol(k), rtol=1e-5)


@pytest.mark.parametrize("m", [1, 5, 6, 17, 143, 144, 145, 600])
@pytest.mark.parametrize(("k", "n"), [(1, 1), (7, 3), (255, 17), (256, 16), (257, 33), (768, 2304), (3072, 40)])
def test_blocked_linear_equals_linear(m: int, k: int, n: int) -> None:
    """Every edge of the blocking: rows around the 6-row tile and 144-row block, columns around
    the 16-column panel, K around the 256 block; the bias only on the first K block."""
    g = torch.Generator().manual_seed(m * 100_000 + k * 100 + n)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    want = F.linear(x.double(), w.double(), b.double())
    torch.testing.assert_close(ops.blocked_linear(x, w, b).double(), want, atol=_tol(k), rtol=1e-5)
    torch.testing.assert_close(ops.blocked_linear(x, w, None).double(), want - b.double(), atol=_tol(k), rtol=1e-5)


def test_inputs_need_not_be_contiguous() -> None:
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(16, 5, generator=g).t(), torch.randn(9, 32, generator=g)[:, :16]
    want = F.linear(x.double(), w.double())
    torch.testing.assert_close(ops.small_linear(x, w, None).double(), want, atol=_tol(16), rtol=1e-5)
    torch.testing.assert_close(
        ops.blocked_linear(x.repeat(5, 1), w, None).double(), want.repeat(5, 1), atol=_tol(16), rtol=1e-5
    )


@pytest.mark.parametrize(("c", "r", "n", "d"), [(4, 12, 577, 768), (1, 1, 1, 16), (3, 36, 33, 32), (2, 7, 2, 64)])
def test_context_products_equal_bmm(c: int, r: int, n: int, d: int) -> None:
    g = torch.Generator().manual_seed(c * 1000 + r + n + d)
    q, tokens, p = (
        torch.randn(c, r, d, generator=g),
        torch.randn(c, n, d, generator=g),
        torch.randn(c, r, n, generator=g),
    )
    tol = _tol(max(n, d))
    want = torch.bmm(q.double(), tokens.double().transpose(1, 2))
    torch.testing.assert_close(ops.context_scores(q, tokens).double(), want, atol=tol, rtol=1e-5)
    torch.testing.assert_close(
        ops.context_mix(p, tokens).double(), torch.bmm(p.double(), tokens.double()), atol=tol, rtol=1e-5
    )


def _sdpa(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d3 = qkv.shape
    q, k, v = qkv.double().view(b, n, 3, heads, d3 // 3 // heads).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)


@pytest.mark.parametrize(("b", "n", "heads", "hd"), [(4, 577, 12, 64), (1, 1, 1, 16), (2, 17, 3, 32), (1, 145, 16, 64)])
def test_attention_equals_sdpa(b: int, n: int, heads: int, hd: int) -> None:
    """Token counts around the 6-query groups and 16-key panels, one token, several heads;
    probabilities sum to 1, so the output's error is the values' scale times a few ulp."""
    g = torch.Generator().manual_seed(b * 1000 + n + heads + hd)
    qkv = torch.randn(b, n, 3 * heads * hd, generator=g) * 2  # peaked softmax rows too
    torch.testing.assert_close(ops.attention(qkv, heads).double(), _sdpa(qkv, heads), atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 3, 5])
def test_any_thread_count(threads: int) -> None:
    """The kernels take torch's thread count per call (the blocked product lays its threads out
    as a rows x columns grid)."""
    g = torch.Generator().manual_seed(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for m, k, n in [(600, 70, 50), (40, 33, 300), (7, 64, 9)]:
            x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
            op = ops.small_linear if m <= 16 else ops.blocked_linear
            torch.testing.assert_close(
                op(x, w, b).double(), F.linear(x.double(), w.double(), b.double()), atol=2e-4, rtol=1e-5
            )
        qkv = torch.randn(2, 13, 3 * 32, generator=g)
        torch.testing.assert_close(ops.attention(qkv, 2).double(), _sdpa(qkv, 2), atol=5e-5, rtol=1e-5)
    finally:
        torch.set_num_threads(before)


BAD_CALLS = [
    ("small_linear", lambda: ops.small_linear(torch.randn(4, 16), torch.randn(8, 24), None), "differ in K"),
    ("small_linear", lambda: ops.small_linear(torch.randn(4, 12), torch.randn(8, 12), None), "multiple of 8"),
    ("small_linear", lambda: ops.small_linear(torch.randn(4, 16), torch.randn(8, 16), torch.randn(7)), "bias"),
    ("blocked_linear", lambda: ops.blocked_linear(torch.randn(40, 16, 2), torch.randn(8, 16), None), "2 dimensions"),
    ("blocked_linear", lambda: ops.blocked_linear(torch.randn(0, 16), torch.randn(8, 16), None), "empty"),
    (
        "blocked_linear",
        lambda: ops.blocked_linear(torch.randn(4, 16).double(), torch.randn(8, 16).double(), None),
        "float32",
    ),
    ("context_scores", lambda: ops.context_scores(torch.randn(2, 3, 32), torch.randn(3, 5, 32)), "do not match"),
    ("context_mix", lambda: ops.context_mix(torch.randn(2, 3, 5), torch.randn(2, 6, 32)), "do not match"),
    ("context_mix", lambda: ops.context_mix(torch.randn(2, 3, 5), torch.randn(2, 5, 24)), "multiple of 16"),
    ("attention", lambda: ops.attention(torch.randn(2, 5, 3 * 40), 2), "hd % 16"),
    ("attention", lambda: ops.attention(torch.randn(2, 5, 3 * 64), 3), "hd % 16"),
]


@pytest.mark.parametrize(("op", "call", "says"), BAD_CALLS, ids=[f"{op}-{says}" for op, _, says in BAD_CALLS])
def test_bad_shapes_raise_python_errors(op: str, call, says: str) -> None:
    """Never a read past a buffer: a ValueError naming the op, eagerly and while tracing."""
    with pytest.raises(ValueError, match=f"openblip::{op}.*{says}"):
        call()
    with FakeTensorMode(), pytest.raises(ValueError, match=f"openblip::{op}.*{says}"):
        call()


def test_fake_implementations_give_the_output_shapes() -> None:
    with FakeTensorMode():
        assert ops.small_linear(torch.randn(4, 16), torch.randn(8, 16), torch.randn(8)).shape == (4, 8)
        assert ops.blocked_linear(torch.randn(40, 7), torch.randn(9, 7), None).shape == (40, 9)
        assert ops.context_scores(torch.randn(2, 3, 32), torch.randn(2, 5, 32)).shape == (2, 3, 5)
        assert ops.context_mix(torch.randn(2, 3, 5), torch.randn(2, 5, 32)).shape == (2, 3, 32)
        assert ops.attention(torch.randn(2, 5, 3 * 64), 2).shape == (2, 5, 64)


def test_registered_with_the_dispatcher() -> None:
    """torch.library's own check of each op: schema, fake implementation against the real one."""
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(4, 16, generator=g), torch.randn(8, 16, generator=g), torch.randn(8, generator=g)
    torch.library.opcheck(ops.small_linear, (x, w, b), test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(ops.blocked_linear, (x.repeat(5, 1), w, b), test_utils=("test_schema", "test_faketensor"))
    q, t = torch.randn(2, 3, 32, generator=g), torch.randn(2, 5, 32, generator=g)
    torch.library.opcheck(ops.context_scores, (q, t), test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(
        ops.context_mix, (torch.randn(2, 3, 5, generator=g), t), test_utils=("test_schema", "test_faketensor")
    )
    torch.library.opcheck(
        ops.attention, (torch.randn(2, 5, 3 * 32, generator=g), 2), test_utils=("test_schema", "test_faketensor")
    )
