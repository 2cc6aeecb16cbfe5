"""Our AVX2 small-row matrix product (kernels/small_linear.c), built on first use with the C
compiler that is there, for CPU fp32 decoding steps.

Why: a decoding step multiplies a few rows (one per sequence) by every weight matrix, which is
bound by streaming the weights. oneDNN reaches ~15 GB/s on this shape (it is instruction-bound:
one thread halves it), MKL 5-7 GB/s; this kernel 19-26 GB/s for 4 rows and 14-18 GB/s for 12 on
a 2-core AVX2 machine (benchmarks/RESULTS.md). Same products up to float summation order.

The shared object is cached in the openblip cache (convert/fetch.py: $OPENBLIP_CACHE, else
$XDG_CACHE_HOME/openblip, else ~/.cache/openblip) under kernels/, keyed by
a hash of the source and flags, written atomically. Anything missing (not x86-64 Linux, no
AVX2/FMA, no compiler, a failed build, OPENBLIP_CPU_KERNEL=0) leaves `product` at None and
callers use oneDNN; the reason is logged once.
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
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "small_linear.c"
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC")
MAX_ROWS = 16  # above this oneDNN is as good (the kernel is made for decoding steps)

Product = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


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
    if not SOURCE.is_file():
        return f"kernel source {SOURCE} missing"
    return None


def build(compiler: str | None = None) -> Path:
    """Compile the kernel (or find it in the cache); its path. Raises OSError/CalledProcessError."""
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise FileNotFoundError("no C compiler (cc/gcc) on PATH")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join((cc, *FLAGS)).encode()).hexdigest()[:16]
    target = cache_dir() / f"small_linear-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([cc, *FLAGS, str(SOURCE), "-o", tmp], check=True, capture_output=True, timeout=120)
        os.replace(tmp, target)  # atomic: concurrent builders all end with one good file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _bind(path: Path) -> Product:
    fn = ctypes.CDLL(str(path)).openblip_small_linear
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 5
    fn.restype = None

    def product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x (M, K) fp32 with M <= MAX_ROWS, weight (N, K), bias (N,) -> (M, N); contiguous CPU
        tensors, K % 8 == 0, N % 2 == 0 (see `fits`)."""
        m, k = x.shape
        n = weight.shape[0]
        padded = (m + 5) // 6 * 6  # the kernel takes x in groups of six rows
        xp = x
        if padded != m:
            xp = torch.zeros(padded, k, dtype=x.dtype)
            xp[:m] = x
        y = torch.empty(m, n, dtype=x.dtype)
        bias_ptr = None if bias is None else bias.data_ptr()
        fn(xp.data_ptr(), weight.data_ptr(), bias_ptr, y.data_ptr(), m, padded, n, k, torch.get_num_threads())
        return y

    return product


@functools.cache
def product() -> Product | None:
    """The kernel's product function, building it on first call; None when unavailable
    (`product.cache_clear()` resolves it anew)."""
    reason = _unavailable_reason()
    if reason is None:
        try:
            return _bind(build())
        except (OSError, subprocess.SubprocessError, AttributeError) as err:
            stderr = getattr(err, "stderr", b"") or b""
            reason = f"build failed: {err} {stderr.decode(errors='replace')[:300]}".strip()
    log.info("small-row CPU kernel not used (%s); decoding uses oneDNN", reason)
    return None


def fits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Shapes and layouts the kernel takes (x already 2-D, fp32 CPU inference is the caller's check)."""
    return (
        x.shape[0] <= MAX_ROWS
        and x.shape[1] % 8 == 0
        and weight.shape[0] % 2 == 0
        and x.is_contiguous()
        and weight.is_contiguous()
        and (bias is None or bias.is_contiguous())
    )
