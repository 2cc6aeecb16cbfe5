"""How idle OpenMP threads wait, set before torch loads its OpenMP runtime (stdlib only).

torch's CPU ops and our CPU kernels (backends/cpu) share one OpenMP thread pool: torch's
libgomp, sized per call to torch.get_num_threads(). After each parallel region libgomp's
workers busy-wait by default (about 300,000 spins) before sleeping, so that the next region
starts at once. On cores shared with other processes (other jobs, DataLoader workers, the
test suite's subprocesses) those spins take the cores from the threads that have work:
measured on a 2-core machine under a load average of 13-16, ten greedy decoding steps of a
base model took 22-74 s with the default wait and 0.8-3.7 s with OMP_WAIT_POLICY=PASSIVE
(benchmarks/RESULTS.md, "OpenMP threads on shared cores"). Passive waiting costs a futex
wake-up per parallel region instead, small against the ops of a BLIP model.

libgomp reads the policy once, when it is loaded (with torch), so this must run first.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_wait() -> bool:
    """OMP_WAIT_POLICY=PASSIVE unless set already (a user's ACTIVE is kept); True when it can
    still take effect (torch not loaded yet in this process; child processes inherit it)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules
