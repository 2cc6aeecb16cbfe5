"""DIR/stats.json, summed from the shards' done records (so a resumed run, whatever was killed
when, writes the same numbers; only the timings differ).

The filter's precision and recall are at finding noisy web texts: a web text is "found" when the
filter drops it, and it is noisy when its sample's json carries a `noise` label other than
"clean" (the synthetic web split's). Per noise type, the share of its texts dropped (its recall;
for "clean", the share wrongly dropped).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openblip.bootstrap.atomic import publish, temp_path
from openblip.bootstrap.faults import kill_point
from openblip.bootstrap.inputs import InputShard
from openblip.bootstrap.shard import HIST_BINS, read_done

CLEAN = "clean"


def _rate(n: float, seconds: float) -> float | None:
    return round(n / seconds, 3) if seconds > 0 else None


def noise_scores(noise: Mapping[str, Mapping[str, int]]) -> dict[str, Any] | None:
    if not noise:
        return None
    noisy = {k: v for k, v in noise.items() if k != CLEAN}
    clean = noise.get(CLEAN, {})
    tp = sum(v.get("dropped", 0) for v in noisy.values())
    positives = sum(v.get("count", 0) for v in noisy.values())
    fp = clean.get("dropped", 0)
    return {
        "precision": round(tp / (tp + fp), 6) if tp + fp else None,
        "recall": round(tp / positives, 6) if positives else None,
        "noisy": positives,
        "clean": clean.get("count", 0),
        "by_type": {
            k: {
                "count": v.get("count", 0),
                "dropped": v.get("dropped", 0),
                "dropped_share": round(v.get("dropped", 0) / v["count"], 6) if v.get("count") else None,
            }
            for k, v in sorted(noise.items())
        },
    }


def collect(
    out: Path, shards: Sequence[InputShard], unfinished: Mapping[str, list[str]], threshold: float
) -> dict[str, Any]:
    """Stats over the input shards' done records; `unfinished`: shards this run could not read."""
    totals: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    noise: dict[str, Counter[str]] = {}
    hist = {"web": [0] * HIST_BINS, "synthetic": [0] * HIST_BINS}
    failed: list[dict[str, str]] = []
    done = incomplete = 0
    for shard in shards:
        record = read_done(out, shard.name)
        if record is None:
            for problem in unfinished.get(shard.name, ["not processed"]):
                failed.append({"shard": shard.name, "path": shard.path, "error": problem})
            continue
        done += 1
        incomplete += 0 if record["complete"] else 1
        totals.update(
            samples=record["rows"],
            used=record["samples_used"],
            web_kept=record["web"]["kept"],
            web_dropped=record["web"]["dropped"],
            synthetic_kept=record["synthetic"]["kept"],
            synthetic_dropped=record["synthetic"]["dropped"],
            pairs=record["pairs"],
        )
        errors.update(record["errors"])
        seconds.update(record["seconds"])
        for label, c in record["noise"].items():
            noise.setdefault(label, Counter()).update(c)
        for which in hist:
            hist[which] = [a + b for a, b in zip(hist[which], record["hist"][which])]
        failed.extend({"shard": shard.name, "path": shard.path, "error": e} for e in record["shard_errors"])
    n = totals["samples"]
    return {
        "samples": n,
        "samples_used": totals["used"],
        "errors": {"total": sum(errors.values()), "by_reason": dict(sorted(errors.items()))},
        "shards": {"total": len(shards), "done": done, "cut_by_limit": incomplete, "failed": failed},
        "threshold": threshold,
        "web": {"kept": totals["web_kept"], "dropped": totals["web_dropped"]},
        "synthetic": {"kept": totals["synthetic_kept"], "dropped": totals["synthetic_dropped"]},
        "kept_pairs": totals["pairs"],
        "noise": noise_scores(noise),
        "histograms": {"bins": HIST_BINS, "range": [0.0, 1.0], **hist},
        # Stage rates are per process (decode summed over its workers); end_to_end is samples over
        # the wall time spent on shards, model loading aside.
        "throughput": {
            "samples_per_s": {
                "decode": _rate(n, seconds["decode"]),
                "caption": _rate(totals["used"], seconds["caption"]),
                "filter": _rate(totals["used"], seconds["filter"]),
                "end_to_end": _rate(n, seconds["wall"]),
            },
            "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
        },
    }


def failed(stats: Mapping[str, Any]) -> bool:
    """Exit code 1: any sample or shard failed."""
    return bool(stats["errors"]["total"] or stats["shards"]["failed"])


def write_stats(out: Path, stats: Mapping[str, Any]) -> Path:
    import json

    final = out / "stats.json"
    tmp = temp_path(final)
    tmp.write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    kill_point("stats-write")
    publish(tmp, final)
    return final
