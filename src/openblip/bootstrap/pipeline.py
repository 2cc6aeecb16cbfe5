"""The local engine: shards in order, decoding in worker processes overlapped with the models.

    input shards ─► read (main process) ─► decode (--workers processes, a bounded window ahead)
                 ─► caption + filter (Scorer, this process) ─► ShardRun rows / kept pairs ─► commit

Memory is bounded by the window (2 x workers batches in flight) and one shard's rows. A shard's
outputs are published whole when its last batch is scored (shard.py); a rerun skips shards with a
done record, so a killed run loses at most the shards it was working on, which it redoes.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from openblip.bootstrap.atomic import remove_stale_temps, write_json
from openblip.bootstrap.config import BootstrapConfig
from openblip.bootstrap.faults import kill_point
from openblip.bootstrap.heatmaps import Explain, explainer
from openblip.bootstrap.inputs import InputShard, RawSample, read_shard
from openblip.bootstrap.shard import ShardRun, read_done
from openblip.bootstrap.stages import Decoded, Scorer, decode_batch, init_decode_worker, web_text_problem

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


class Progress(Protocol):
    def update(self, samples: int, web_kept: int, texts_kept: int, texts: int) -> None: ...


class NoProgress:
    def update(self, samples: int, web_kept: int, texts_kept: int, texts: int) -> None:
        pass


# ---- the output directory --------------------------------------------------------------------------
def check_out(cfg: BootstrapConfig) -> Path:
    """DIR/run.json records what decides the outputs; resuming with any of it changed is refused
    (ValueError naming the settings). Writes nothing."""
    out = Path(cfg.out)
    run_file, identity = out / RUN_FILE, cfg.identity()
    if run_file.is_file():
        before = json.loads(run_file.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
        if changed:
            raise ValueError(
                f"{out} holds a run with other settings ({', '.join(changed)}); "
                "use a new --out or the same settings to resume it"
            )
    return out


def prepare_out(cfg: BootstrapConfig) -> Path:
    """Create DIR (or reuse it, to resume): run.json, and no temporary files of a killed run."""
    out = check_out(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RUN_FILE).is_file():
        write_json(out / RUN_FILE, cfg.identity())
    for sub in ("", "scores", "shards", "done"):
        removed = remove_stale_temps(out / sub)
        if removed:
            log.info("removed %d temporary files of an interrupted run in %s", removed, out / sub)
    return out


def is_done(out: Path, shard: InputShard, budget: int | None) -> int | None:
    """The rows of a shard that needs no work (its done record is complete, or holds at least the
    `budget` rows a --limit leaves for it), else None."""
    done = read_done(out, shard.name)
    if done is not None and (done["complete"] or (budget is not None and done["rows"] >= budget)):
        return int(done["rows"])
    return None


def pending_shards(out: Path, shards: Sequence[InputShard]) -> list[InputShard]:
    """The shards without a complete done record."""
    return [s for s in shards if is_done(out, s, None) is None]


# ---- the stream of work -------------------------------------------------------------------------------
@dataclass
class Batch:
    run: ShardRun
    raws: list[RawSample]
    decode: list[tuple[int, str, bytes]] = field(default_factory=list)  # (index, key, bytes) to decode


@dataclass
class ShardEnd:
    run: ShardRun
    complete: bool
    read: int  # rows read (all of them become rows of the shard)


def prepared(raw: RawSample) -> RawSample:
    """A sample whose web text cannot be scored becomes an error row before any decoding."""
    if raw.error is None and raw.text is not None:
        raw.error = web_text_problem(raw.text)
    return raw


def shard_batches(
    out: Path, shard: InputShard, budget: int | None, batch_size: int, threshold: float, explain: Explain | None
) -> Iterator[Batch | ShardEnd]:
    run = ShardRun(out, shard, threshold, explain)
    batch = Batch(run, [])
    complete, read = True, 0
    for raw in read_shard(shard, run.shard_errors):
        if budget is not None and raw.index >= budget:
            complete = False
            break
        read += 1
        raw = prepared(raw)
        batch.raws.append(raw)
        if raw.error is None:
            batch.decode.append((raw.index, raw.key, raw.image))
        if len(batch.decode) == batch_size:
            yield batch
            batch = Batch(run, [])
    if batch.raws:
        yield batch
    yield ShardEnd(run, complete, read)


def pixels_of(decoded: Sequence[Decoded], sizes: int) -> list[torch.Tensor]:
    """(B, 3, S, S) per input size from the decoded samples' arrays."""
    return [torch.from_numpy(np.stack([d.pixels[i] for d in decoded if d.pixels is not None])) for i in range(sizes)]


# ---- the engine -----------------------------------------------------------------------------------------
class LocalEngine:
    def __init__(self, cfg: BootstrapConfig, scorer: Scorer, progress: Progress) -> None:
        self.cfg, self.scorer, self.progress = cfg, scorer, progress
        self.explain = explainer(scorer.filter, cfg.max_pixels)  # the report's heat maps, at each commit
        self.unfinished: dict[str, list[str]] = {}  # unreadable shards (no outputs; a rerun retries them)
        self._last_commit = time.perf_counter()

    def run(self, out: Path, shards: Sequence[InputShard]) -> dict[str, list[str]]:
        """Process the shards not yet done (in order, up to cfg.limit rows in all, the rows of
        finished shards included); returns the shards that could not be read at all."""
        workers = self.cfg.workers
        executor = None
        if workers > 0:
            executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=init_decode_worker)
        window: deque[tuple[Batch | ShardEnd, Future[Any] | None]] = deque()
        depth = max(2, 2 * workers)
        self._last_commit = time.perf_counter()
        try:
            remaining = self.cfg.limit
            for shard in shards:
                if remaining is not None and remaining <= 0:
                    break
                rows = is_done(out, shard, remaining)
                if rows is not None:
                    remaining = None if remaining is None else remaining - rows
                    continue
                batches = shard_batches(out, shard, remaining, self.cfg.batch_size, self.cfg.threshold, self.explain)
                for item in batches:
                    if isinstance(item, ShardEnd) and remaining is not None:
                        remaining -= item.read
                    window.append((item, self._submit(executor, item)))
                    while len(window) > depth:
                        self._finish(*window.popleft())
            while window:
                self._finish(*window.popleft())
        except BaseException:
            for item, fut in window:
                if fut is not None:
                    fut.cancel()
                if isinstance(item, ShardEnd):
                    item.run.abort()
            raise
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        return self.unfinished

    def _submit(self, executor: ProcessPoolExecutor | None, item: Batch | ShardEnd) -> Future[Any] | None:
        if executor is None or not isinstance(item, Batch) or not item.decode:
            return None
        return executor.submit(decode_batch, item.decode, self.scorer.sizes, self.cfg.max_pixels)

    def _finish(self, item: Batch | ShardEnd, fut: Future[Any] | None) -> None:
        if isinstance(item, ShardEnd):
            self._end(item)
            return
        if fut is not None:
            decoded, seconds = fut.result()
        else:
            decoded, seconds = decode_batch(item.decode, self.scorer.sizes, self.cfg.max_pixels)
        item.run.seconds["decode"] += seconds
        add_scored(item.run, item.raws, decoded, self.scorer, self.progress)
        kill_point("mid-shard")

    def _end(self, end: ShardEnd) -> None:
        run = end.run
        if not run.rows and run.shard_errors:
            run.abort()
            self.unfinished[run.shard.name] = run.shard_errors
            log.warning("shard %s: %s", run.shard.path, "; ".join(run.shard_errors))
            return
        now = time.perf_counter()
        run.seconds["wall"] += now - self._last_commit
        self._last_commit = now
        run.commit(end.complete)
        for problem in run.shard_errors:
            log.warning("shard %s: %s", run.shard.path, problem)


def add_scored(
    run: ShardRun, raws: Sequence[RawSample], decoded: Sequence[Decoded], scorer: Scorer, progress: Progress
) -> None:
    """Score the decoded samples of a batch and add every row of it (in sample order) to `run`."""
    by_index = {d.index: d for d in decoded}
    good = [r for r in raws if r.error is None and by_index[r.index].error is None]
    caption0, filter0 = scorer.times.caption, scorer.times.filter
    pixels = pixels_of([by_index[r.index] for r in good], len(scorer.sizes)) if good else []
    scored = scorer.score([r.key for r in good], [r.text or "" for r in good], pixels)
    run.seconds["caption"] += scorer.times.caption - caption0
    run.seconds["filter"] += scorer.times.filter - filter0
    results = {r.index: s for r, s in zip(good, scored)}
    web_kept = texts_kept = texts = 0
    for raw in raws:
        s = results.get(raw.index)
        run.add(raw, by_index.get(raw.index), s)
        if s is not None and s.web is not None:
            web_kept += s.web.kept
            texts += 1 + len(s.synthetic_scores)
            texts_kept += s.web.kept + sum(x.kept for x in s.synthetic_scores)
    progress.update(len(raws), web_kept, texts_kept, texts)


def load_scorer(cfg: BootstrapConfig) -> Scorer:
    """Load the filter (and the captioner, once when they are the same checkpoint); a model that
    cannot do its part is a ValueError naming it."""
    from openblip.api import load
    from openblip.tasks.inputs import require_caption_decoder, require_heads

    def one(flag: str, source: str) -> Any:
        try:
            return load(
                source,
                device=cfg.device,
                dtype=cfg.dtype,
                image_size=cfg.image_size,
                tokenizer=cfg.tokenizer,
                max_pixels=cfg.max_pixels,
            )
        except (OSError, ValueError, ImportError, RuntimeError) as e:  # missing files, bad checkpoints, no network
            raise ValueError(f"{flag} {source}: cannot load model: {e}") from e

    filt = one("--filter", cfg.filter)
    try:
        require_heads(filt.model, "filtering (ITM and ITC)")
    except ValueError as e:
        raise ValueError(f"--filter {cfg.filter}: {e}") from e
    captioner = None
    if cfg.captioner is not None:
        captioner = filt if cfg.shared_model else one("--captioner", cfg.captioner)
        if captioner is not filt and _same_checkpoint(captioner, filt):
            captioner = filt  # two names of one checkpoint: one copy, its ViT run once per image
        try:
            require_caption_decoder(captioner.model)
            check_caption_settings(captioner, cfg)
        except ValueError as e:
            raise ValueError(f"--captioner {cfg.captioner}: {e}") from e
    return Scorer(filt, captioner, cfg.caption, cfg.threshold)


def _same_checkpoint(a: Any, b: Any) -> bool:
    """Two loaded pipelines read the same files at the same settings (e.g. two names of one
    shipped model)."""
    same_files = a.source.path.resolve() == b.source.path.resolve()
    return bool(same_files and a.image_size == b.image_size and a.tokenizer.vocab_size == b.tokenizer.vocab_size)


def check_caption_settings(captioner: Any, cfg: BootstrapConfig) -> None:
    from openblip.tasks.caption import prompt_ids

    positions = captioner.model.cfg.text.max_positions
    if cfg.caption.max_length > positions:
        raise ValueError(f"max_length {cfg.caption.max_length} exceeds the model's {positions} positions")
    if prompt_ids(captioner.tokenizer, cfg.caption.prompt).numel() >= cfg.caption.max_length:
        raise ValueError(f"the prompt {cfg.caption.prompt!r} leaves nothing to generate")
