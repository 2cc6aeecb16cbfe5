"""`bootstrap(...)`: one CapFilt run over input shards, by the local engine or on Ray, ending with
DIR/stats.json and DIR/report.html built from every finished shard."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openblip.bootstrap.config import BootstrapConfig
from openblip.bootstrap.inputs import InputShard, find_shards
from openblip.bootstrap.pipeline import (
    LocalEngine,
    NoProgress,
    Progress,
    check_out,
    load_scorer,
    pending_shards,
    prepare_out,
)
from openblip.bootstrap.report import write_report
from openblip.bootstrap.stats import collect, failed, write_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance ("auto": join the running cluster)
    num_cpus: int | None = None  # a local instance's CPUs (default: all)


@dataclass
class BootstrapResult:
    out: Path
    stats: dict[str, Any]
    shards: list[InputShard]

    @property
    def exit_code(self) -> int:
        return 1 if failed(self.stats) else 0


def bootstrap(
    cfg: BootstrapConfig,
    inputs: Sequence[str],
    *,
    ray: RayOptions | None = None,
    progress: Progress | None = None,
) -> BootstrapResult:
    """Run CapFilt over `inputs` (see bootstrap/inputs.py) into cfg.out. Finished shards of an
    earlier run into the same directory are skipped. ray: run on Ray Data instead of locally.
    Bad inputs (no such path, a model that cannot caption or filter) raise ValueError /
    FileNotFoundError before any output is written; bad samples and shards are recorded."""
    shards = find_shards(inputs)
    if ray is not None and cfg.limit is not None:
        raise ValueError("--limit is for the local engine (Ray reads shards in parallel)")
    todo = pending_shards(check_out(cfg), shards)
    log.info("%d input shards, %d to do", len(shards), len(todo))
    # the models are loaded (and refused when unusable) before anything is written
    scorer = load_scorer(cfg) if todo and ray is None else None
    out = prepare_out(cfg)
    unfinished: dict[str, list[str]] = {}
    if todo and ray is not None:
        from openblip.bootstrap.ray_engine import run_ray

        unfinished = run_ray(cfg, out, todo, ray, progress or NoProgress())
    elif scorer is not None:
        unfinished = LocalEngine(cfg, scorer, progress or NoProgress()).run(out, shards)
    stats = collect(out, shards, unfinished, cfg.threshold)
    write_stats(out, stats)
    write_report(out, shards, stats)
    return BootstrapResult(out, stats, shards)
