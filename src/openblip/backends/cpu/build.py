"""Compiling the C kernels (csrc/) with the system C compiler, caching the shared object, and
loading it once per process.

The object is cached in the openblip cache ($OPENBLIP_CACHE, else $XDG_CACHE_HOME/openblip,
else ~/.cache/openblip) under kernels/, keyed by a hash of the sources, compiler and flags, and
written atomically, so concurrent builders all end with one good file. The kernels are AVX2 +
FMA code: they need an x86-64 Linux machine with those instructions.

The OpenMP runtime: torch's Linux wheels ship libgomp.so.1 and load it first; our object links
libgomp.so.1 by the same soname, so the dynamic loader gives it torch's copy: one thread pool,
sized per call to torch.get_num_threads(), whose workers the kernels and torch's ops share.
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
from pathlib import Path

import torch

from openblip.cache_dir import cache_dir as openblip_cache

log = logging.getLogger(__name__)

CSRC = Path(__file__).with_name("csrc")
SOURCES = tuple(CSRC / name for name in ("small_linear.c", "blocked_linear.c", "folded_attention.c", "attention.c"))
HEADERS = (CSRC / "tile.h",)
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC")


class KernelsUnavailable(RuntimeError):
    """The kernels cannot run here; the message says why."""


def cache_dir() -> Path:
    return openblip_cache() / "kernels"


def unsupported_reason() -> str | None:
    """Why this machine cannot run the kernels at all (not a failure: torch's ops are the path
    there), or None."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"not x86-64 Linux ({platform.system()} {platform.machine()})"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"CPU capability {capability} (the kernels need AVX2 and FMA)"
    return None


def compile_kernels(compiler: str | None = None) -> Path:
    """Compile the kernels (or find them in the cache); the shared object's path. Raises
    OSError / subprocess.SubprocessError when they cannot be built."""
    missing = [str(src) for src in SOURCES + HEADERS if not src.is_file()]
    if missing:
        raise FileNotFoundError(f"kernel source {', '.join(missing)} missing")
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


@functools.cache
def library() -> ctypes.CDLL:
    """The loaded kernels, built on first call. Raises KernelsUnavailable saying why, and the
    first time a build fails on a machine that supports them, logs that once at WARNING with
    the fallback (`library.cache_clear()` tries anew)."""
    reason = unsupported_reason()
    if reason is not None:
        raise KernelsUnavailable(reason)
    try:
        lib = ctypes.CDLL(str(compile_kernels()))
        _declare(lib)
    except (OSError, subprocess.SubprocessError, AttributeError) as err:
        stderr = getattr(err, "stderr", b"") or b""
        why = f"build failed: {err} {stderr.decode(errors='replace')[:300]}".strip()
        if why not in _warned:
            _warned.add(why)
            log.warning("CPU kernels unavailable (%s); fp32 CPU inference uses torch's own ops", why)
        raise KernelsUnavailable(why) from err
    return lib


_warned: set[str] = set()


def available() -> str | None:
    """None when the kernels load here, else why not (building them if needed)."""
    try:
        library()
    except KernelsUnavailable as err:
        return str(err)
    return None


def _declare(lib: ctypes.CDLL) -> None:
    """C signatures (csrc/*.c): pointers, then sizes, then the thread count."""
    ptr, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    lib.openblip_small_linear.argtypes = [ptr] * 4 + [i32] * 6
    lib.openblip_small_linear.restype = None
    lib.openblip_blocked_linear.argtypes = [ptr] * 4 + [i64] * 3 + [i32]
    lib.openblip_blocked_linear.restype = i32
    lib.openblip_folded_context.argtypes = [ptr] * 3 + [i32] * 5
    lib.openblip_folded_context.restype = None
    lib.openblip_attention.argtypes = [ptr] * 2 + [i64] * 4 + [ctypes.c_float, i32]
    lib.openblip_attention.restype = i32
