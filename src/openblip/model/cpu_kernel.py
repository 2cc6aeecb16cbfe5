"""Our AVX2 kernels for CPU fp32 inference (kernels/*.c), built on first use with the C compiler
that is there. Same results as the torch ops they replace, up to float summation order.

- `Kernels.few_rows` (small_linear.c), decoding steps: a few rows (one per sequence) times every
  weight matrix, bound by streaming the weights: 19-26 GB/s for 4 rows on a 2-core AVX2 VM where
  oneDNN reaches ~15 and MKL 5-7.
- `Kernels.many_rows` (blocked_linear.c, its register tile in tile.h), every other linear layer
  (the vision encoder, prompts, cross-attention keys/values): compute-bound; a packed, blocked
  product at ~180-190 GFLOP/s on the vision encoder's shapes on a 2-core Zen 2 whose FMA peak is
  ~210, where MKL (torch's CPU GEMM) reaches 110-145 and oneDNN 115-125.
- `Kernels.scores` (small_linear.c, one product per context) / `Kernels.mix` (folded_attention.c):
  cross-attention through folded
  projections while decoding (model/text.py, `attend_folded`).
- `Kernels.attention` (attention.c): the vision encoder's self-attention per (image, head), scores
  softmax and weighted values kept in cache, read from the fused qkv projection (~1.4x SDPA).
Figures: benchmarks/RESULTS.md.

The compute-bound two (many_rows, attention) are AVX2 code measured against torch on AVX2
CPUs; on a CPU with AVX-512, where torch's MKL / oneDNN run 512-bit code, torch keeps those
(`OPENBLIP_CPU_KERNEL=all` takes ours there too); the memory-bound ones are used on both.

All are compiled into one shared object, cached in the openblip cache (convert/fetch.py:
$OPENBLIP_CACHE, else $XDG_CACHE_HOME/openblip, else ~/.cache/openblip) under kernels/, keyed by
a hash of the sources and flags, written atomically. Anything missing (not x86-64 Linux, no
AVX2/FMA, no compiler, a failed build, OPENBLIP_CPU_KERNEL=0) leaves `load()` at None and callers
use the torch ops (oneDNN for few rows); the reason is logged once.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

KERNELS = Path(__file__).with_name("kernels")
SOURCES = tuple(KERNELS / name for name in ("small_linear.c", "blocked_linear.c", "folded_attention.c", "attention.c"))
HEADERS = (KERNELS / "tile.h",)
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC")
MAX_ROWS = 16  # up to this many rows the few-rows kernel; above, the blocked one

Product = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
Batched = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Kernels:
    """x (M, K) @ weight (N, K)^T + bias (N,) -> (M, N), on contiguous fp32 CPU tensors."""

    few_rows: Product  # M <= MAX_ROWS, K % 8 == 0
    many_rows: Product | None  # any M, N, K >= 1; None on AVX-512 CPUs (compute_bound_kernels)
    # Per context c, for cross-attention with folded projections (small_linear.c, folded_attention.c);
    # contiguous fp32, D % 16 == 0:
    scores: Batched  # q (C, R, D), tokens (C, N, D) -> q[c] tokens[c]^T (C, R, N)
    mix: Batched  # p (C, R, N), tokens (C, N, D) -> p[c] tokens[c] (C, R, D)
    # Unmasked self-attention from a fused projection (kernels/attention.c), head size % 16 == 0:
    attention: Callable[[torch.Tensor, int], torch.Tensor] | None  # qkv (B, N, 3 D), heads -> (B, N, D)


def cache_dir() -> Path:
    from openblip.convert.fetch import cache_dir as openblip_cache  # stdlib-only module

    return openblip_cache() / "kernels"


def _unavailable_reason() -> str | None:
    if os.environ.get("OPENBLIP_CPU_KERNEL", "1") == "0":
        return "disabled by OPENBLIP_CPU_KERNEL=0"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"not x86-64 Linux ({platform.system()} {platform.machine()})"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"CPU capability {capability} (needs AVX2 and FMA)"
    missing = [str(src) for src in SOURCES + HEADERS if not src.is_file()]
    if missing:
        return f"kernel source {', '.join(missing)} missing"
    return None


def compute_bound_kernels() -> bool:
    """Whether our compute-bound kernels (blocked product, attention) beat torch's here: on AVX2
    CPUs (measured); not on AVX-512 ones, whose wider FMAs torch's MKL / oneDNN use and our AVX2
    code does not (unmeasured there; OPENBLIP_CPU_KERNEL=all takes ours anyway)."""
    if os.environ.get("OPENBLIP_CPU_KERNEL") == "all":
        return True
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def build(compiler: str | None = None) -> Path:
    """Compile the kernel (or find it in the cache); its path. Raises OSError/CalledProcessError."""
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise FileNotFoundError("no C compiler (cc/gcc) on PATH")
    source = b"".join(src.read_bytes() for src in SOURCES + HEADERS)
    key = hashlib.sha256(source + " ".join((cc, *FLAGS)).encode()).hexdigest()[:16]
    target = cache_dir() / f"linear-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [cc, *FLAGS, *map(str, SOURCES), "-o", tmp]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        os.replace(tmp, target)  # atomic: concurrent builders all end with one good file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _bind(path: Path) -> Kernels:
    lib = ctypes.CDLL(str(path))
    small = lib.openblip_small_linear
    small.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 6
    small.restype = None
    blocked = lib.openblip_blocked_linear
    blocked.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int]
    blocked.restype = ctypes.c_int

    def few_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        m, k = x.shape
        n = weight.shape[0]
        y = torch.empty(m, n, dtype=x.dtype)
        bias_ptr = None if bias is None else bias.data_ptr()
        small(x.data_ptr(), weight.data_ptr(), bias_ptr, y.data_ptr(), 1, m, n, k, 0, torch.get_num_threads())
        return y

    def many_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        m, k = x.shape
        n = weight.shape[0]
        y = torch.empty(m, n, dtype=x.dtype)
        bias_ptr = None if bias is None else bias.data_ptr()
        if blocked(x.data_ptr(), weight.data_ptr(), bias_ptr, y.data_ptr(), m, n, k, torch.get_num_threads()):
            raise MemoryError(f"cannot allocate packing buffers for a ({m}, {k}) x ({n}, {k}) product")
        return y

    folded_context = lib.openblip_folded_context
    folded_context.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 5
    folded_context.restype = None

    def scores(q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        c, r, d = q.shape
        n = tokens.shape[1]
        out = torch.empty(c, r, n, dtype=q.dtype)
        small(q.data_ptr(), tokens.data_ptr(), None, out.data_ptr(), c, r, n, d, 1, torch.get_num_threads())
        return out

    def mix(p: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        c, r, n = p.shape
        d = tokens.shape[2]
        out = torch.empty(c, r, d, dtype=p.dtype)
        folded_context(p.data_ptr(), tokens.data_ptr(), out.data_ptr(), c, r, n, d, torch.get_num_threads())
        return out

    fused = lib.openblip_attention
    fused.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 4 + [ctypes.c_float, ctypes.c_int]
    fused.restype = ctypes.c_int

    def attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
        b, n, d3 = qkv.shape
        d = d3 // 3
        hd = d // heads
        out = torch.empty(b, n, d, dtype=qkv.dtype)
        if fused(qkv.data_ptr(), out.data_ptr(), b, n, heads, hd, hd**-0.5, torch.get_num_threads()):
            raise MemoryError(f"cannot allocate attention buffers for {n} tokens")
        return out

    if not compute_bound_kernels():
        log.info("CPU kernels: AVX-512 CPU, torch's GEMM and attention kept for the compute-bound products")
        return Kernels(few_rows=few_rows, many_rows=None, scores=scores, mix=mix, attention=None)
    return Kernels(few_rows=few_rows, many_rows=many_rows, scores=scores, mix=mix, attention=attention)


@functools.cache
def load() -> Kernels | None:
    """The kernels, building them on first call; None when unavailable (`load.cache_clear()`
    resolves them anew)."""
    reason = _unavailable_reason()
    if reason is None:
        try:
            return _bind(build())
        except (OSError, subprocess.SubprocessError, AttributeError) as err:
            stderr = getattr(err, "stderr", b"") or b""
            reason = f"build failed: {err} {stderr.decode(errors='replace')[:300]}".strip()
    log.info("CPU kernels not used (%s); inference uses oneDNN / MKL", reason)
    return None


def pick(kernels: Kernels, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> Product | None:
    """The kernel for these shapes and layouts, or None (x already 2-D; fp32 CPU inference is the
    caller's check)."""
    m, k = x.shape
    n = weight.shape[0]
    if not (m and k and n and x.is_contiguous() and weight.is_contiguous()):
        return None
    if bias is not None and not bias.is_contiguous():
        return None
    if m <= MAX_ROWS:
        return kernels.few_rows if k % 8 == 0 else None
    return kernels.many_rows
