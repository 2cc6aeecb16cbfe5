"""`run.deterministic`: training that is bitwise reproducible run to run, and so across a resume.

On the CPU with more than one intra-op thread, two runs of one config can differ in the last bits:
now and then (a few of ~25 repeats of one step from one saved state, 2 threads, AVX-512) the
weight-gradient products of the vision encoder's backward pass (MKL sgemm) come out in another
summation order although their inputs are bitwise equal. MKL's reproducibility mode
(MKL_CBWR=AUTO,STRICT or COMPATIBLE, MKL_DYNAMIC=FALSE) does not remove it, and the kernels'
floating-point state (MXCSR: no flush-to-zero is set by torch or openblip's C kernels) was ruled
out. One intra-op thread does remove it: every product then reduces in one fixed order.

So the switch runs the training process on one intra-op thread on the CPU: bitwise equal runs at
any OMP_NUM_THREADS, at the cost of the other cores (about half the speed with 2 threads). On
CUDA it asks torch for deterministic algorithms (and cuBLAS for a fixed workspace), which costs
some kernels' speed. Both are undone when training returns, so an in-process caller keeps its
thread count.
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
