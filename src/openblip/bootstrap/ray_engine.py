"""`--engine ray`: the same pipeline on Ray Data, writing the same files.

    shards ─► read + decode (Ray tasks, one per shard: flat_map)
           ─► caption + filter (an actor pool, one model replica per GPU, or per CPU slot on a
              CPU machine; two pools, captioner then filter, when they are different checkpoints)
           ─► the driver collects each shard's rows and publishes them (shard.py), as the local engine

Rows travel as pickled records in a binary column (a sample's pixels, thumbnail and scores), so
Ray Data moves them without schema inference. Each shard ends with a marker row carrying how many
rows it read and its shard-level problems; the driver publishes a shard once all its rows are back.
On a cluster the shards and DIR must be on storage every node sees (the driver writes DIR; the
read tasks open the shards).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openblip.bootstrap.config import BootstrapConfig
from openblip.bootstrap.heatmaps import Explain, explainer
from openblip.bootstrap.inputs import InputShard, RawSample
from openblip.bootstrap.pipeline import Progress, load_scorer, prepared
from openblip.bootstrap.shard import ShardRun
from openblip.bootstrap.stages import Decoded, Scored, caption_tokens, decode_one

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    rows: dict[int, tuple[RawSample, Decoded | None, Scored | None]] = field(default_factory=dict)
    expected: int | None = None
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "caption": 0.0, "filter": 0.0})


class _ReadShard:
    """flat_map: one input row {"shard": i} -> the shard's sample rows, decoded, then its end marker."""

    def __init__(self, shards: Sequence[InputShard], sizes: tuple[int, ...], max_pixels: int) -> None:
        self.shards, self.sizes, self.max_pixels = list(shards), sizes, max_pixels

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        from openblip.bootstrap.inputs import read_shard

        torch.set_num_threads(1)
        i = int(row["shard"])
        problems: list[str] = []
        n = 0
        for raw in read_shard(self.shards[i], problems):
            raw = prepared(raw)
            start = time.perf_counter()
            decoded = None if raw.error else decode_one(raw.index, raw.key, raw.image, self.sizes, self.max_pixels)
            seconds = time.perf_counter() - start
            n += 1
            yield {"shard": i, "end": False, "item": pickle.dumps((raw, decoded, None, seconds, 0.0, 0.0))}
        yield {"shard": i, "end": True, "item": pickle.dumps((n, problems))}


def _good(item: tuple[Any, ...]) -> bool:
    raw, decoded = item[0], item[1]
    return raw.error is None and decoded is not None and decoded.error is None


def _pixels(items: Sequence[tuple[Any, ...]], index: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([it[1].pixels[index] for it in items]))


class _ModelActor:
    """map_batches callable class: loads its model(s) once per actor; end markers pass through."""

    def __init__(self, cfg: BootstrapConfig, sizes: tuple[int, ...], part: str) -> None:
        import dataclasses

        from openblip.bootstrap.config import CaptionSettings

        torch.set_num_threads(1)
        self.part, self.sizes = part, sizes
        if part == "caption":
            from openblip.api import load

            assert cfg.captioner is not None
            self.captioner = load(
                cfg.captioner,
                device=cfg.device,
                dtype=cfg.dtype,
                image_size=cfg.image_size,
                tokenizer=cfg.tokenizer,
                max_pixels=cfg.max_pixels,
            )
            self.caption: CaptionSettings = cfg.caption
        else:  # "both" (one checkpoint captions and filters, or no captioner) or "filter"
            self.scorer = load_scorer(cfg if part == "both" else dataclasses.replace(cfg, captioner=None))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(b) for b in batch["item"]]
        ends = batch["end"]
        work = [i for i, it in enumerate(items) if not ends[i] and _good(it)]
        out = list(items)
        if work:
            start = time.perf_counter()
            chosen = [items[i] for i in work]
            keys = [it[0].key for it in chosen]
            if self.part == "caption":
                size = self.captioner.image_size
                with torch.inference_mode():
                    model = self.captioner.model
                    tokens = model.encode_image(_pixels(chosen, self.sizes.index(size)).to(model.device))
                    texts = caption_tokens(self.captioner, self.caption.generation(), self.caption.prompt, tokens, keys)
                share = (time.perf_counter() - start) / len(work)
                for i, t in zip(work, texts):
                    raw, dec, _, d, _, _ = items[i]
                    out[i] = (raw, dec, t, d, share, 0.0)
            else:
                pixels = [_pixels(chosen, self.sizes.index(s)) for s in self.scorer.sizes]
                given = None if self.part == "both" else [it[2] for it in chosen]
                c0, f0 = self.scorer.times.caption, self.scorer.times.filter
                scored = self.scorer.score(keys, [it[0].text or "" for it in chosen], pixels, given)
                cap = (self.scorer.times.caption - c0) / len(work)
                filt = (self.scorer.times.filter - f0) / len(work)
                for i, s in zip(work, scored):
                    raw, dec, _, d, c, _ = items[i]
                    out[i] = (raw, dec, s, d, c + cap, filt)
        return {"shard": batch["shard"], "end": ends, "item": np.array([pickle.dumps(it) for it in out], dtype=object)}


def run_ray(
    cfg: BootstrapConfig, out: Path, shards: Sequence[InputShard], options: Any, progress: Progress
) -> dict[str, list[str]]:
    """Process `shards` on Ray (local instance or options.address); returns the unreadable ones."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("--engine ray needs Ray: pip install 'openblip[ray]'") from e

    # the driver loads the models once to refuse unusable ones before any work, and for the input sizes
    checked = load_scorer(cfg)
    sizes, shared = checked.sizes, checked.shared
    # the driver keeps the filter only to draw the report's heat maps when it publishes a shard
    # (which examples a shard keeps is known only once all its rows are back, not in an actor)
    explain = explainer(checked.filter, cfg.max_pixels)
    del checked
    ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI has its own
    if not ray.is_initialized():
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False)
    gpus = 1 if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) else 0
    slots = int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1))
    stages = ["both"] if shared or cfg.captioner is None else ["caption", "filter"]
    if gpus:  # a replica per GPU; two pools share each GPU
        pool: dict[str, Any] = {"num_gpus": 1 / len(stages)}
        most = max(1, slots)
    else:  # a replica per CPU slot, one CPU always left to the read tasks (else the actors starve them)
        pool = {"num_cpus": 1 / len(stages)}
        most = max(1, slots - 1)

    ds: Any = ray.data.from_items([{"shard": i} for i in range(len(shards))], override_num_blocks=max(1, len(shards)))
    ds = ds.flat_map(_ReadShard(shards, sizes, cfg.max_pixels))
    for part in stages:
        ds = ds.map_batches(
            _ModelActor,
            fn_constructor_args=(cfg, sizes, "both" if cfg.captioner is None else part),
            batch_size=cfg.batch_size,
            batch_format="numpy",
            concurrency=(1, most),
            zero_copy_batch=False,
            **pool,
        )
    return _collect(cfg, out, shards, iter(ds.iter_rows()), progress, explain)


def _collect(
    cfg: BootstrapConfig,
    out: Path,
    shards: Sequence[InputShard],
    rows: Iterator[dict[str, Any]],
    progress: Progress,
    explain: Explain | None = None,
) -> dict[str, list[str]]:
    pending: dict[int, _Pending] = {}
    unfinished: dict[str, list[str]] = {}
    last = time.perf_counter()
    for row in rows:
        i = int(row["shard"])
        p = pending.setdefault(i, _Pending())
        item = pickle.loads(row["item"])
        if row["end"]:
            p.expected, p.problems = item
        else:
            raw, decoded, scored, d, c, f = item
            p.rows[raw.index] = (raw, decoded, scored)
            p.seconds["decode"] += d
            p.seconds["caption"] += c
            p.seconds["filter"] += f
        if p.expected is not None and len(p.rows) == p.expected:
            del pending[i]
            now = time.perf_counter()
            if _publish(cfg, out, shards[i], p, now - last, progress, unfinished, explain):
                last = now
    return unfinished


def _publish(
    cfg: BootstrapConfig,
    out: Path,
    shard: InputShard,
    p: _Pending,
    wall: float,
    progress: Progress,
    unfinished: dict[str, list[str]],
    explain: Explain | None,
) -> bool:
    if not p.rows and p.problems:
        unfinished[shard.name] = p.problems
        log.warning("shard %s: %s", shard.path, "; ".join(p.problems))
        return False
    run = ShardRun(out, shard, cfg.threshold, explain)
    run.shard_errors.extend(p.problems)
    try:
        web_kept = texts_kept = texts = 0
        for index in sorted(p.rows):
            raw, decoded, scored = p.rows[index]
            run.add(raw, decoded, scored if isinstance(scored, Scored) else None)
            if isinstance(scored, Scored) and scored.web is not None:
                web_kept += scored.web.kept
                texts += 1 + len(scored.synthetic_scores)
                texts_kept += scored.web.kept + sum(x.kept for x in scored.synthetic_scores)
        for k, v in p.seconds.items():
            run.seconds[k] += v
        run.seconds["wall"] += wall
        run.commit(complete=True)
    except BaseException:
        run.abort()
        raise
    progress.update(len(p.rows), web_kept, texts_kept, texts)
    return True
