"""One input shard's outputs, built row by row and published whole.

Per shard NAME: `scores/NAME.parquet` (one row per input sample), `shards/NAME.tar` (the kept
pairs, webdataset layout, image bytes unchanged) and last `done/NAME.json`, whose presence means
the shard is finished: it holds the shard's counts, score histograms, stage timings and a few
candidate examples for the report (with their Grad-CAM heat maps when the filter can draw them,
bootstrap/heatmaps.py), so stats.json and report.html are built from the done
records alone (a resumed run gives the same stats, whatever was killed when).
"""

from __future__ import annotations

import base64
import heapq
import io
import json
import tarfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openblip.bootstrap.atomic import publish, temp_path, write_json
from openblip.bootstrap.faults import kill_point
from openblip.bootstrap.heatmaps import Explain
from openblip.bootstrap.inputs import InputShard, RawSample, error_reason
from openblip.bootstrap.stages import Decoded, Scored
from openblip.model.sampling import name_key

SCORES_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("web_text", pa.string()),
        ("web_itm", pa.float64()),
        ("web_itc", pa.float64()),
        ("web_kept", pa.bool_()),
        ("synthetic_texts", pa.list_(pa.string())),
        ("synthetic_itm", pa.list_(pa.float64())),
        ("synthetic_itc", pa.list_(pa.float64())),
        ("synthetic_kept", pa.list_(pa.bool_())),
        ("error", pa.string()),
        ("meta", pa.string()),
    ]
)
HIST_BINS = 50  # ITM histogram bins over [0, 1]
EXAMPLES_PER_SHARD = 24  # candidates per grid kept by each shard; the report keeps the run's best of them
GRIDS = ("lowest_web", "replaced", "synthetic_dropped")


def output_paths(out: Path, name: str) -> dict[str, Path]:
    return {
        "scores": out / "scores" / f"{name}.parquet",
        "shard": out / "shards" / f"{name}.tar",
        "done": out / "done" / f"{name}.json",
    }


def read_done(out: Path, name: str) -> dict[str, Any] | None:
    path = output_paths(out, name)["done"]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _member_stem(key: str) -> str:
    # webdataset splits a member name at its first "." and reads "/" as folders
    return key.replace(".", "_").replace("/", "_")


def _bin(p: float) -> int:
    return min(HIST_BINS - 1, max(0, int(p * HIST_BINS)))


@dataclass
class _Examples:
    """A shard's report candidates: the lowest web ITM, and for the other grids a bottom-k sample
    by a hash of the key (the union of the shards' bottom-k holds the run's bottom-k: a uniform,
    order-independent sample of bounded size)."""

    heaps: dict[str, list[tuple[float, str, dict[str, Any]]]] = field(default_factory=lambda: {g: [] for g in GRIDS})

    def offer(self, grid: str, rank: float, key: str, example: dict[str, Any]) -> None:
        heap = self.heaps[grid]
        item = (-rank, key, example)  # max-heap on rank: the worst kept candidate on top
        if len(heap) < EXAMPLES_PER_SHARD:
            heapq.heappush(heap, item)
        elif (-rank, key) > (heap[0][0], heap[0][1]):
            heapq.heapreplace(heap, item)

    def lists(self) -> dict[str, list[dict[str, Any]]]:
        return {g: [e for _, _, e in sorted(h, key=lambda x: (-x[0], x[1]))] for g, h in self.heaps.items()}

    def draw_heatmaps(self, explain: Explain) -> None:
        """Give each kept candidate its heat maps: the web text's (lowest-scoring and replaced web
        texts) and the first dropped synthetic text's (synthetic texts dropped), by `explain` on
        the candidate's full image; then drop the image (the record keeps only the pictures)."""
        for grid, heap in self.heaps.items():
            for _, _, ex in heap:
                maps = ex.setdefault("heatmaps", {})
                if grid in ("lowest_web", "replaced") and "web" not in maps:
                    maps["web"] = {"text": ex["web_text"], "jpeg": explain(ex["_image"], ex["web_text"], ex["key"])}
                scored = zip(ex["synthetic_itm"], ex["synthetic_kept"])
                dropped = [i for i, (p, kept) in enumerate(scored) if p is not None and not kept]
                if grid == "synthetic_dropped" and dropped and "synthetic" not in maps:
                    text = ex["synthetic_texts"][dropped[0]]
                    maps["synthetic"] = {"text": text, "jpeg": explain(ex["_image"], text, ex["key"])}

    def strip_images(self) -> None:
        for heap in self.heaps.values():
            for _, _, ex in heap:
                ex.pop("_image", None)


class ShardRun:
    """Collects one shard's rows and kept pairs (`add`, in sample order) and publishes its outputs
    (`commit`). The kept pairs stream into a temporary tar; rows stay in memory (one shard's)."""

    def __init__(self, out: Path, shard: InputShard, threshold: float, explain: Explain | None = None) -> None:
        self.out, self.shard, self.threshold, self.explain = out, shard, threshold, explain
        self.paths = output_paths(out, shard.name)
        for p in self.paths.values():
            p.parent.mkdir(parents=True, exist_ok=True)
        self._tar_tmp = temp_path(self.paths["shard"])
        self._tar = tarfile.open(self._tar_tmp, "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 (spans adds)
        self.rows: list[dict[str, Any]] = []
        self.shard_errors: list[str] = []
        self.errors: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.noise: dict[str, Counter[str]] = {}
        self.hist = {"web": [0] * HIST_BINS, "synthetic": [0] * HIST_BINS}
        self.examples = _Examples()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    # ---- rows ------------------------------------------------------------------------------------
    def add(self, raw: RawSample, decoded: Decoded | None, scored: Scored | None) -> None:
        start = time.perf_counter()
        self._add(raw, decoded, scored)
        self.seconds["write"] += time.perf_counter() - start

    def _add(self, raw: RawSample, decoded: Decoded | None, scored: Scored | None) -> None:
        error = raw.error or (decoded.error if decoded else None) or (scored.error if scored else None)
        row: dict[str, Any] = {
            "key": raw.key,
            "shard": self.shard.name,
            "web_text": raw.text,
            "web_itm": None,
            "web_itc": None,
            "web_kept": None,
            "synthetic_texts": [],
            "synthetic_itm": [],
            "synthetic_itc": [],
            "synthetic_kept": [],
            "error": error,
            "meta": json.dumps(raw.meta, sort_keys=True, ensure_ascii=False),
        }
        self.rows.append(row)
        if error is not None or decoded is None or scored is None or scored.web is None:
            self.errors[error_reason(error or "", raw.key)] += 1
            return
        web, syn = scored.web, scored.synthetic_scores
        row.update(
            web_itm=web.itm,
            web_itc=web.itc,
            web_kept=web.kept,
            synthetic_texts=list(scored.synthetic),
            synthetic_itm=[s.itm for s in syn],
            synthetic_itc=[s.itc for s in syn],
            synthetic_kept=[s.kept for s in syn],
        )
        self._count(raw, row)
        stem, image = _member_stem(raw.key), raw.image
        if web.kept:
            self._pair(f"{stem}_web", image, decoded.ext, raw, "web", raw.text or "", web.itm, web.itc)
        for i, (text, s) in enumerate(zip(scored.synthetic, syn)):
            if s.kept:
                self._pair(f"{stem}_syn{i}", image, decoded.ext, raw, "synthetic", text, s.itm, s.itc)
        self._offer_examples(raw, decoded, row)

    def _count(self, raw: RawSample, row: dict[str, Any]) -> None:
        self.counts["samples_used"] += 1
        self.counts["web_kept" if row["web_kept"] else "web_dropped"] += 1
        self.hist["web"][_bin(row["web_itm"])] += 1
        for p, kept in zip(row["synthetic_itm"], row["synthetic_kept"]):
            self.counts["synthetic_kept" if kept else "synthetic_dropped"] += 1
            if p is not None:
                self.hist["synthetic"][_bin(p)] += 1
        label = raw.meta.get("noise")
        if isinstance(label, str):
            c = self.noise.setdefault(label, Counter())
            c["count"] += 1
            c["dropped"] += 0 if row["web_kept"] else 1

    def _pair(
        self, stem: str, image: bytes, ext: str, raw: RawSample, source: str, text: str, itm: Any, itc: Any
    ) -> None:
        meta = {"key": raw.key, "shard": self.shard.name, "source": source, "itm": itm, "itc": itc, "meta": raw.meta}
        for suffix, data in (
            (ext, image),
            ("txt", text.encode("utf-8")),
            ("json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")),
        ):
            info = tarfile.TarInfo(f"{stem}.{suffix}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644  # mtime 0: same run, same bytes
            self._tar.addfile(info, io.BytesIO(data))
        self.counts["pairs"] += 1

    def _offer_examples(self, raw: RawSample, decoded: Decoded, row: dict[str, Any]) -> None:
        example = {
            "key": raw.key,
            "shard": self.shard.name,
            "thumb": base64.b64encode(decoded.thumb).decode("ascii"),
            "web_text": raw.text,
            "web_itm": row["web_itm"],
            "web_kept": row["web_kept"],
            "synthetic_texts": row["synthetic_texts"],
            "synthetic_itm": row["synthetic_itm"],
            "synthetic_kept": row["synthetic_kept"],
            "noise": raw.meta.get("noise"),
        }
        if self.explain is not None:  # the full image, for the heat maps drawn at commit; never in the record
            example["_image"] = raw.image
        rank = name_key(raw.key) / 2.0**64
        self.examples.offer("lowest_web", row["web_itm"], raw.key, example)
        if not row["web_kept"] and any(row["synthetic_kept"]):
            self.examples.offer("replaced", rank, raw.key, example)
        if not all(row["synthetic_kept"]):
            self.examples.offer("synthetic_dropped", rank, raw.key, example)

    # ---- publishing -------------------------------------------------------------------------------
    def commit(self, complete: bool) -> dict[str, Any]:
        """Publish scores, kept shard, then the done record (each atomically); returns the record."""
        kill_point("before-commit")
        if self.explain is not None:
            start = time.perf_counter()
            self.examples.draw_heatmaps(self.explain)
            self.examples.strip_images()
            self.seconds["heatmaps"] += time.perf_counter() - start
        start = time.perf_counter()
        self._tar.close()
        scores_tmp = temp_path(self.paths["scores"])
        pq.write_table(pa.Table.from_pylist(self.rows, schema=SCORES_SCHEMA), scores_tmp)
        publish(scores_tmp, self.paths["scores"])
        kill_point("between-renames")
        publish(self._tar_tmp, self.paths["shard"])
        self.seconds["write"] += time.perf_counter() - start
        record = self.record(complete)
        write_json(self.paths["done"], record)
        kill_point("after-shard")
        return record

    def record(self, complete: bool) -> dict[str, Any]:
        c = self.counts
        return {
            "shard": self.shard.name,
            "path": self.shard.path,
            "rows": len(self.rows),
            "complete": complete,
            "samples_used": c["samples_used"],
            "shard_errors": list(self.shard_errors),
            "errors": dict(sorted(self.errors.items())),
            "web": {"kept": c["web_kept"], "dropped": c["web_dropped"]},
            "synthetic": {"kept": c["synthetic_kept"], "dropped": c["synthetic_dropped"]},
            "pairs": c["pairs"],
            "noise": {k: dict(v) for k, v in sorted(self.noise.items())},
            "hist": self.hist,
            "seconds": {k: round(v, 4) for k, v in sorted(self.seconds.items())},
            "examples": self.examples.lists(),
        }

    def abort(self) -> None:
        self._tar.close()
        self._tar_tmp.unlink(missing_ok=True)
