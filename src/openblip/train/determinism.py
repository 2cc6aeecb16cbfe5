"""Training is bitwise reproducible on the CPU at any fixed thread count: two runs of one config
and seed end with the same weights, so a killed and resumed run ends where an uninterrupted one
would.

The one run-to-run difference found at 2 threads (AMD EPYC with AVX-512, torch's MKL BLAS): the
weight-gradient products of the vision encoder's backward pass (a (out, in) result summed over
batch x tokens rows) now and then came out in another summation order, with the activations and
incoming gradients bitwise equal (measured by repeating one training step from one state). MKL's
GEMM picks its threading at run time; its "conditional numerical reproducibility" mode (CNR,
`MKL_CBWR`) with a fixed thread count (`MKL_DYNAMIC=FALSE`) fixes the order, at the cost of a
code path chosen once per CPU rather than per call. MKL reads both variables at its first call, so
they are set when openblip.train is imported (`openblip train` imports it before any torch work);
a user's own value wins. `check_reproducible_blas` warns when a run starts without CNR (torch
already did matrix products in this process before openblip.train was imported).

Everything else the loop runs was checked deterministic at a fixed thread count: torch's CPU
reductions split work by thread number, not by timing; the data stream and every random draw
are seeded (train/data.py, train/checkpoint.py). CUDA runs are not bitwise reproducible (atomics
in several backward kernels).
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

BLAS_ENV = {"MKL_CBWR": "AUTO,STRICT", "MKL_DYNAMIC": "FALSE"}
_MKL_CBWR_BRANCH = 1  # mkl_cbwr_get(MKL_CBWR_BRANCH): which code branch CNR mode pins
_MKL_CBWR_BRANCH_OFF = 1  # CNR off


def set_reproducible_blas_env() -> None:
    """Ask MKL for reproducible results (CNR, fixed threads) unless the user chose otherwise.
    Effective only before the process's first MKL call."""
    for key, value in BLAS_ENV.items():
        os.environ.setdefault(key, value)


def mkl_cnr_branch() -> int | None:
    """MKL's CNR branch in this process (1: off), or None when torch does not use MKL."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        get = ctypes.CDLL(str(lib)).mkl_serv_cbwr_get
    except (OSError, AttributeError):  # another build layout: nothing to check
        return None
    get.argtypes = [ctypes.c_int]
    get.restype = ctypes.c_int
    return int(get(_MKL_CBWR_BRANCH))


def check_reproducible_blas(device: object) -> bool:
    """True when CPU training here is run-to-run reproducible as far as the BLAS goes; warns
    (once per run) when MKL runs without CNR at more than one thread."""
    import torch

    if getattr(device, "type", device) != "cpu" or torch.get_num_threads() == 1:
        return True
    branch = mkl_cnr_branch()
    if branch is None or branch != _MKL_CBWR_BRANCH_OFF:
        return True
    log.warning(
        "MKL runs without conditional numerical reproducibility: two runs of this config may differ "
        "in the last bits (and a resumed run from an uninterrupted one). Set MKL_CBWR=AUTO,STRICT "
        "and MKL_DYNAMIC=FALSE before the first matrix product (openblip train does), or import "
        "openblip.train before using torch"
    )
    return False
