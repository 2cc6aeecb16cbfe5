"""Deterministic kill points for the crash-safety tests.

`OPENBLIP_BOOTSTRAP_KILL_AT=POINT[:N]` makes the process SIGKILL itself the N-th time (default
the first) it reaches POINT: a kill at an exact moment, repeatable, which a signal sent from
outside at a random time is not. Points: `mid-shard` (after a batch's rows were added to an
unfinished shard), `before-commit`, `between-renames` (the scores file is in place, the kept
shard not yet), `after-shard` (a shard's done record is in place), `stats-write` (stats.json's
temporary file is written, not yet renamed). Unset, `kill_point` costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "OPENBLIP_BOOTSTRAP_KILL_AT"
POINTS = ("mid-shard", "before-commit", "between-renames", "after-shard", "stats-write")
_reached: Counter[str] = Counter()


def kill_point(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
