"""DIR/table.json and DIR/table.md: one row per arm, each figure's mean and spread over the seeds.

The spread is the sample standard deviation (n - 1 in the denominator; 0 for one seed), with the
smallest and largest value and every seed's own in table.json, so a reader sees how much of a
difference between arms the seeds alone would make.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openblip.reproduce.arms import Arm, BootstrapRun

# (key in an arm's evaluation, column heading); retrieval in percent, CIDEr-D on pycocoevalcap's scale
ARM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("txt_r1", "R@1 i→t"),
    ("txt_r5", "R@5 i→t"),
    ("img_r1", "R@1 t→i"),
    ("img_r5", "R@5 t→i"),
    ("r1_mean", "mean R@1"),
    ("cider", "CIDEr-D"),
    ("attribute_f1", "attr. F1"),
)
FILTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("filter_precision", "precision"),
    ("filter_recall", "recall"),
    ("web_kept_share", "web kept"),
    ("replaced_share", "web replaced"),
)


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """mean, spread (sample standard deviation), min, max and n of the values that exist."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "spread": None, "min": None, "max": None, "n": 0, "values": list(values)}
    mean = math.fsum(xs) / len(xs)
    spread = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return {"mean": mean, "spread": spread, "min": min(xs), "max": max(xs), "n": len(xs), "values": list(values)}


def build_table(
    preset: Mapping[str, Any],
    seeds: Sequence[int],
    arms: Sequence[Arm],
    evals: Mapping[int, Mapping[Arm, Mapping[str, Any]]],
    pairs: Mapping[int, Mapping[Arm, Mapping[str, Any]]],
    bootstraps: Mapping[int, Mapping[BootstrapRun, Mapping[str, Any]]],
) -> dict[str, Any]:
    """The table from every seed's arm evaluations, arm training-set counts and bootstrap summaries."""
    rows = []
    for arm in arms:
        row: dict[str, Any] = {"arm": arm.value, "label": arm.label}
        for key, _ in ARM_COLUMNS:
            row[key] = summarize([evals[s][arm].get(key) for s in seeds])
        for key in ("clean", "web", "synthetic", "pairs"):
            row[f"train_{key}"] = summarize([pairs[s][arm].get(key, 0) for s in seeds])
        rows.append(row)
    runs = sorted({b for s in seeds for b in bootstraps[s]}, key=list(BootstrapRun).index)
    filters = []
    for run in runs:
        f: dict[str, Any] = {"bootstrap": run.value}
        for key, _ in FILTER_COLUMNS:
            f[key] = summarize([bootstraps[s][run].get(key) for s in seeds])
        noise_types = sorted({k for s in seeds for k in bootstraps[s][run].get("dropped_share_by_noise", {})})
        f["dropped_share_by_noise"] = {
            k: summarize([bootstraps[s][run]["dropped_share_by_noise"].get(k) for s in seeds]) for k in noise_types
        }
        filters.append(f)
    chance = summarize([evals[s][arms[0]].get("chance_r1") for s in seeds])["mean"]
    return {"preset": dict(preset), "seeds": list(seeds), "chance_r1": chance, "arms": rows, "filter": filters}


def _cell(stat: Mapping[str, Any], scale: float = 1.0, digits: int = 1) -> str:
    if stat["mean"] is None:
        return "-"
    text = f"{stat['mean'] * scale:.{digits}f}"
    return text + (f" ± {stat['spread'] * scale:.{digits}f}" if stat["n"] > 1 else "")


def table_markdown(table: Mapping[str, Any]) -> str:
    seeds = table["seeds"]
    preset = table["preset"]
    lines = [
        f"# openblip reproduce --preset {preset['name']}: CapFilt ablation on the synthetic scenes",
        "",
        f"Seeds {', '.join(map(str, seeds))}: mean ± sample standard deviation over the seeds"
        if len(seeds) > 1
        else f"Seed {seeds[0]} (one seed: no spread)",
        f"(retrieval in %, chance R@1 {table['chance_r1']:.1f}%; CIDEr-D x100; attribute F1 x100).",
        "",
        "| arm | " + " | ".join(h for _, h in ARM_COLUMNS) + " | training pairs (web + synthetic) |",
        "|---|" + "---|" * (len(ARM_COLUMNS) + 1),
    ]
    for row in table["arms"]:
        scale = {"cider": 100.0, "attribute_f1": 100.0}
        cells = [_cell(row[k], scale.get(k, 1.0)) for k, _ in ARM_COLUMNS]
        pairs = f"{_cell(row['train_web'], digits=0)} + {_cell(row['train_synthetic'], digits=0)}"
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {pairs} |")
    if table["filter"]:
        noise_types = sorted({k for f in table["filter"] for k in f["dropped_share_by_noise"]})
        lines += [
            "",
            "The filter (ITM > threshold keeps a text) against the web split's noise labels: precision and",
            "recall at finding noisy web texts, the share of web texts kept, the share replaced (web text",
            "dropped, a synthetic caption kept), and the share of each noise type's texts dropped (for clean",
            "texts, the share wrongly dropped). In %.",
            "",
            "| bootstrap | " + " | ".join(h for _, h in FILTER_COLUMNS) + " | " + " | ".join(noise_types) + " |",
            "|---|" + "---|" * (len(FILTER_COLUMNS) + len(noise_types)),
        ]
        for f in table["filter"]:
            cells = [_cell(f[k], 100.0) for k, _ in FILTER_COLUMNS]
            cells += [_cell(f["dropped_share_by_noise"].get(k, {"mean": None}), 100.0) for k in noise_types]
            lines.append(f"| {f['bootstrap']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(out: Path, table: Mapping[str, Any]) -> tuple[Path, Path]:
    """DIR/table.json and DIR/table.md, each written whole (temporary name, rename)."""
    written = []
    for name, text in (("table.json", json.dumps(table, indent=1) + "\n"), ("table.md", table_markdown(table))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
        written.append(out / name)
    return written[0], written[1]
