"""`run.deterministic`: training that is bitwise reproducible run to run, and so across a resume.

On the CPU with more than one intra-op thread, two runs of one config can differ in the last bits:
now and then the weight-gradient products of the vision encoder's backward pass come out in
another summation order although their inputs are bitwise equal. They are MKL's multi-threaded
sgemm: with MKL alone held to one thread (MKL_Set_Num_Threads_Local(1) on the training thread)
and every other op on 2 threads, two 24-step runs of configs/pretrain_synth_ci.toml were bitwise
equal, where without it 252 of 273 tensors differed (AVX-512 AMD EPYC, 2026-12-03). MKL's
reproducibility mode (MKL_CBWR=AUTO,STRICT, MKL_DYNAMIC=FALSE) does not remove it, and the
floating-point state of the main thread was ruled out (MXCSR holds no flush-to-zero, with or
without openblip's C kernels loaded). torch has no portable switch for MKL's threads alone (MKL
is absent from ARM and macOS builds), so the switch takes the portable way: on the CPU training
runs on one intra-op thread, which gives bitwise equal runs at any OMP_NUM_THREADS at the cost of
the other cores (at most their share of the speed; on the loaded 2-core machine above, images/s
did not drop measurably). On CUDA it asks torch for deterministic algorithms (and cuBLAS for a
fixed workspace), which costs some kernels' speed. Both are undone when training returns, so an
in-process caller keeps its thread count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)

# cuBLAS picks reduction schedules per stream unless its workspace is fixed (read when cuBLAS starts)
CUBLAS_WORKSPACE = ":4096:8"


@contextmanager
def deterministic_training(enabled: bool, device: torch.device) -> Iterator[None]:
    """Within the block, training on `device` is bitwise reproducible if `enabled`."""
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    algorithms = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        torch.set_num_threads(1)
        if threads > 1:
            log.info("run.deterministic: training on 1 CPU thread instead of %d (bitwise reproducible)", threads)
    else:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(algorithms)
