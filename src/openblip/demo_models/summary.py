"""The plain-language summary `openblip demo` prints after bootstrapping a noisy web split:
what the filter caught against the split's known noise, examples before and after, where the
files are, what to try next. Built from `openblip bootstrap`'s own outputs (stats.json and the
scores parquet files), so it says exactly what the run wrote."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

EXAMPLES = 5

_NOISE_WORDS = {
    "clean": "clean (a true caption)",
    "other_image": "another image's caption",
    "attribute_swap": "one attribute made false",
    "generic": "boilerplate (IMG_0412.jpg, ...)",
    "truncated": "cut mid-sentence",
}


@dataclass(frozen=True)
class Example:
    key: str
    noise: str
    web_text: str
    web_itm: float
    web_kept: bool
    synthetic: tuple[tuple[str, float, bool], ...]  # (text, itm, kept)


def read_examples(bootstrap_dir: Path, n: int = EXAMPLES) -> list[Example]:
    """n rows of the scores files: noisy web texts the filter dropped and replaced by a kept
    synthetic caption first (what CapFilt is for), then any others, in key order."""
    rows: list[Example] = []
    for path in sorted((bootstrap_dir / "scores").glob("*.parquet")):
        for r in pq.read_table(path).to_pylist():
            if r.get("error"):
                continue
            meta = json.loads(r["meta"]) if r.get("meta") else {}
            synthetic = tuple(
                zip(r["synthetic_texts"] or [], r["synthetic_itm"] or [], r["synthetic_kept"] or [], strict=True)
            )
            rows.append(
                Example(r["key"], str(meta.get("noise", "?")), r["web_text"], r["web_itm"], r["web_kept"], synthetic)
            )
    rows.sort(key=lambda e: e.key)

    def replaced(e: Example) -> bool:
        return e.noise != "clean" and not e.web_kept and any(k for _, _, k in e.synthetic)

    chosen = [e for e in rows if replaced(e)][:n]
    chosen += [e for e in rows if e not in chosen][: n - len(chosen)]
    return chosen


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _noise_lines(noise: Mapping[str, Any]) -> list[str]:
    lines = [
        f"  {noise['noisy']} of the web texts were noisy (labelled when the split was written); the filter",
        f"  dropped them with precision {_pct(noise.get('precision'))} and recall {_pct(noise.get('recall'))}:",
    ]
    by_type = noise.get("by_type", {})
    for label in sorted(by_type, key=lambda k: (k == "clean", k)):  # the noise types, then clean
        row = by_type[label]
        words = _NOISE_WORDS.get(label, label)
        what = "wrongly dropped" if label == "clean" else "caught"
        lines.append(
            f"    {words:<34} {row['dropped']:>4} of {row['count']:<4} {what} ({_pct(row.get('dropped_share'))})"
        )
    return lines


def _example_lines(examples: Sequence[Example]) -> list[str]:
    lines: list[str] = []
    for e in examples:
        verdict = "kept" if e.web_kept else "dropped"
        lines.append(f"  [{e.key}] web text ({e.noise}): {e.web_text!r}  ITM {e.web_itm:.2f} -> {verdict}")
        for text, itm, kept in e.synthetic:
            lines.append(f"      captioner wrote: {text!r}  ITM {itm:.2f} -> {'kept' if kept else 'dropped'}")
    return lines


def summary_text(out_dir: Path, bootstrap_dir: Path, seed: int, stats: Mapping[str, Any]) -> str:
    """The whole summary (stdout of `openblip demo`)."""
    web, synthetic = stats["web"], stats["synthetic"]
    n = stats["samples"]
    lines = [
        f"openblip demo: CapFilt on {n} web images with noisy alt-texts (synthetic scenes, seed {seed})",
        "",
        "What it did: wrote a fresh web split whose alt-texts are 40% corrupted (labelled), then ran",
        "`openblip bootstrap` with the shipped models: the captioner (synthetic-caption) wrote a caption",
        "for every image, the filter (synthetic-filter) scored every text against its image with ITM",
        f"and kept those above {stats['threshold']}.",
        "",
        f"  web texts kept {web['kept']}, dropped {web['dropped']}; synthetic captions kept "
        f"{synthetic['kept']}, dropped {synthetic['dropped']}; {stats['kept_pairs']} training pairs written",
    ]
    if stats.get("errors", {}).get("total"):
        lines.append(f"  {stats['errors']['total']} samples could not be used: {stats['errors']['by_reason']}")
    if stats.get("noise"):
        lines += ["", *_noise_lines(stats["noise"])]
    lines += ["", "Examples, before and after:", *_example_lines(read_examples(bootstrap_dir))]
    lines += [
        "",
        "Files:",
        f"  {bootstrap_dir / 'report.html'}   open it in a browser: histograms, examples with thumbnails",
        f"  {bootstrap_dir / 'stats.json'}    the figures above",
        f"  {bootstrap_dir / 'scores'}/       one row per image: texts, ITM/ITC scores, kept or not",
        f"  {bootstrap_dir / 'shards'}/       the cleaned pairs as webdataset shards, ready for `openblip train`",
        "",
        "Next:",
        "  openblip caption --model synthetic-caption IMAGE.jpg      (the demo models know only these scenes)",
        "  openblip bootstrap YOUR_SHARDS/ --out cleaned/ --captioner blip-image-captioning-base/ \\",
        "      --filter blip-itm-base-coco/                         (real photos: the released checkpoints)",
        "  bash scripts/quickstart.sh                                (train a small BLIP from scratch)",
        f"  rerunning `openblip demo --out {out_dir}` reuses what is finished",
    ]
    return "\n".join(lines) + "\n"
