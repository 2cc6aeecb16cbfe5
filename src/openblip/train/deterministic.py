"""`run.deterministic`: torch's deterministic algorithms while training, on every device.

On the CPU, training is bitwise reproducible run to run at any thread count without the switch.
The multi-threaded ops a step runs split their work the same way every run (MKL's sgemm included:
MKL_VERBOSE showed the same products on the same thread counts in two runs that differed). What
made 2-thread runs differ was indexing's backward where an index repeats (an ITM hard negative
drawn twice, the answers of one VQA question): torch adds those gradients into one row with
racing atomic adds once the tensor is large and there is more than one thread (index_put_ with
accumulate), so the vision encoder's gradients changed in the last bits from run to run.
train/objectives.py takes those rows with index_select, whose backward (index_add_) adds in
index order. Two 2-thread runs of the resume test's config (tests/train/test_resume.py) differed
before in 215-266 of their 357 tensors after 12 steps; since, they and two 30-step runs of
configs/pretrain_synth_ci.toml are bitwise equal (AVX-512 AMD EPYC, 2026-12-03).

The switch is a guard for what was not audited: torch then runs the deterministic version of
every op that has one (the CPU's index_put_ with accumulate becomes serial) and raises on an op
that has none, so another objective or a new op cannot make runs differ silently. It keeps every
thread. On CUDA the switch is what makes runs bitwise: many CUDA kernels add with atomics
(index_add_, so index_select's backward, among them), and cuBLAS needs a fixed workspace. The
setting is undone when training returns, so an in-process caller keeps its own.
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
    """Within the block, torch uses deterministic algorithms (and raises on ops without one) if
    `enabled`; training on `device` is then bitwise reproducible."""
    if not enabled:
        yield
        return
    algorithms = torch.are_deterministic_algorithms_enabled()
    if device.type != "cpu":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    log.info("run.deterministic: torch's deterministic algorithms are on")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(algorithms)
