"""The arms of the ablation (BLIP Table 1 and its sampling ablation, Table 2) and the training set
each one pre-trains on.

Every arm holds the whole clean split (the paper's human-annotated COCO + VG, each image with its
five references) plus pairs made from the web split's images:

    no CapFilt               every web image with its alt-text, noise and all
    filter only              the web texts the filter kept (`bootstrap --captioner none`)
    captioner only           every web text and every synthetic caption: nothing filtered
    captioner + filter       the kept web texts and the kept synthetic captions (nucleus)
    captioner + filter, beam the same with beam-search captions

Captioner only and captioner + filter read the same bootstrap run (the same nucleus captions),
so the two differ only by the filter. A web image may give two pairs (its web text and its
caption), as in the paper's bootstrapped dataset.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from openblip.data.formats import iter_samples
from openblip.data.shard_writer import ShardWriter

log = logging.getLogger(__name__)


class BootstrapRun(enum.Enum):
    """The `openblip bootstrap` runs of a seed; the value names its directory."""

    FILTER = "filter"  # --captioner none: the web texts alone
    NUCLEUS = "nucleus"  # captioner (nucleus sampling, top-p) + filter
    BEAM = "beam"  # captioner (beam search) + filter


class Arm(enum.Enum):
    """An arm of the ablation; the value names its directory and its row in the table."""

    NO_CAPFILT = "no_capfilt"
    FILTER_ONLY = "filter_only"
    CAPTIONER_ONLY = "captioner_only"
    CAPTIONER_FILTER = "captioner_filter"
    CAPTIONER_FILTER_BEAM = "captioner_filter_beam"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def bootstrap(self) -> BootstrapRun | None:
        """The bootstrap run whose scores make this arm's web pairs (None: the raw web split)."""
        return _BOOTSTRAP[self]

    @property
    def filters(self) -> bool:
        """Only texts the filter kept are used."""
        return self in (Arm.FILTER_ONLY, Arm.CAPTIONER_FILTER, Arm.CAPTIONER_FILTER_BEAM)

    @property
    def captions(self) -> bool:
        """Synthetic captions are added."""
        return self in (Arm.CAPTIONER_ONLY, Arm.CAPTIONER_FILTER, Arm.CAPTIONER_FILTER_BEAM)


_LABELS = {
    Arm.NO_CAPFILT: "no CapFilt",
    Arm.FILTER_ONLY: "filter only",
    Arm.CAPTIONER_ONLY: "captioner only",
    Arm.CAPTIONER_FILTER: "captioner + filter",
    Arm.CAPTIONER_FILTER_BEAM: "captioner + filter (beam)",
}
_BOOTSTRAP = {
    Arm.NO_CAPFILT: None,
    Arm.FILTER_ONLY: BootstrapRun.FILTER,
    Arm.CAPTIONER_ONLY: BootstrapRun.NUCLEUS,
    Arm.CAPTIONER_FILTER: BootstrapRun.NUCLEUS,
    Arm.CAPTIONER_FILTER_BEAM: BootstrapRun.BEAM,
}
ALL_ARMS: tuple[Arm, ...] = tuple(Arm)


@dataclass(frozen=True)
class ScoreRow:
    """What bootstrap decided for one web sample (a row of DIR/scores/NAME.parquet)."""

    key: str
    web_text: str
    web_kept: bool
    synthetic_texts: tuple[str, ...] = ()
    synthetic_kept: tuple[bool, ...] = ()


@dataclass(frozen=True)
class Pair:
    text: str
    source: str  # "web" or "synthetic"


def arm_pairs(arm: Arm, web_text: str, row: ScoreRow | None) -> list[Pair]:
    """The pairs one web image contributes to `arm`'s training set. `row`: the image's bootstrap
    row (None for no CapFilt, or when bootstrap could not use the sample: then nothing for a
    bootstrapped arm, as bootstrap's own kept shards hold nothing of it)."""
    if arm.bootstrap is None:
        return [Pair(web_text, "web")]
    if row is None:
        return []
    pairs = [Pair(row.web_text, "web")] if row.web_kept or not arm.filters else []
    if arm.captions:
        for text, kept in zip(row.synthetic_texts, row.synthetic_kept, strict=True):
            if kept or not arm.filters:
                pairs.append(Pair(text, "synthetic"))
    return [p for p in pairs if p.text.strip()]


def read_score_rows(bootstrap_out: Path) -> dict[str, ScoreRow]:
    """The usable rows (error null) of every DIR/scores/*.parquet, by sample key."""
    rows: dict[str, ScoreRow] = {}
    files = sorted((bootstrap_out / "scores").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no bootstrap scores in {bootstrap_out / 'scores'}")
    for path in files:
        for r in pq.read_table(path).to_pylist():
            if r["error"] is not None:
                continue
            rows[r["key"]] = ScoreRow(
                key=r["key"],
                web_text=r["web_text"] or "",
                web_kept=bool(r["web_kept"]),
                synthetic_texts=tuple(r["synthetic_texts"] or ()),
                synthetic_kept=tuple(bool(k) for k in r["synthetic_kept"] or ()),
            )
    return rows


def _image_id(key: str) -> int:
    """One id per source image (its web pair and its caption share it)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=7).digest(), "big")


def write_arm_data(
    out: Path,
    arm: Arm,
    clean_split: Path,
    web_split: Path,
    rows: Mapping[str, ScoreRow] | None,
    samples_per_shard: int,
) -> dict[str, Any]:
    """Write `arm`'s training set as webdataset shards into `out` (whole or not at all: built in a
    sibling temporary directory, renamed at the end). Clean samples keep their five references
    (for `data.random_reference`); web pairs carry only their text, so that no training setting
    can swap a web text for a clean reference. Returns the counts."""
    if arm.bootstrap is not None and rows is None:
        raise ValueError(f"arm {arm.value} needs the scores of bootstrap run {arm.bootstrap.value}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a killed earlier attempt
    counts: Counter[str] = Counter()
    with ShardWriter(tmp, samples_per_shard) as writer:
        for s in iter_samples(clean_split):
            refs = s.meta.get("references") or [s.text]
            writer.write(s.image_bytes, s.text, {"source": "clean", "references": refs, "image_id": _image_id(s.key)})
            counts["clean"] += 1
        for s in iter_samples(web_split):
            noise = str(s.meta.get("noise", "unknown"))
            for pair in arm_pairs(arm, s.text or "", None if rows is None else rows.get(s.key)):
                meta = {"source": pair.source, "origin": s.key, "image_id": _image_id(s.key)}
                if pair.source == "web":
                    meta["noise"] = noise  # for reading the set; training uses only the text
                    counts[f"web_{noise}"] += 1
                writer.write(s.image_bytes, pair.text, meta)
                counts[pair.source] += 1
    summary = {"arm": arm.value, "pairs": writer.count, **dict(sorted(counts.items()))}
    (tmp / "arm.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("arm %s: %d training pairs in %s", arm.value, writer.count, out)
    return summary


def pair_texts(split: Path) -> list[tuple[str, str]]:
    """(source, text) of every sample of an arm's training set, in order (for tests and reading)."""
    return [(str(s.meta.get("source")), s.text or "") for s in iter_samples(split)]


def arms_needing(arms: Iterable[Arm]) -> list[BootstrapRun]:
    """The bootstrap runs the arms read, each once, in BootstrapRun order."""
    wanted = {a.bootstrap for a in arms}
    return [b for b in BootstrapRun if b in wanted]
