"""`openblip reproduce --preset quick|full --out DIR [--seeds 0,1,2] [--device D]`: BLIP's CapFilt
ablation (Table 1) on the synthetic scenes, with the same compute budget for every arm.

Per seed: (1) pre-train on the clean split plus the noisy web split (the no-CapFilt arm);
(2) fine-tune one model as captioner (LM) and filter (ITC + ITM) on the clean split; (3) bootstrap
the web split with it (`openblip bootstrap`: filter only, nucleus captions, beam captions);
(4) pre-train again from scratch on the clean split plus each arm's bootstrapped web pairs, with
step 1's steps and batch; (5) evaluate every arm on the held-out test split: retrieval R@1 / R@5
both ways, caption CIDEr-D and attribute F1.

Arms: no CapFilt, filter only, captioner only (web and synthetic texts, nothing filtered),
captioner + filter, captioner + filter with beam-search captions. Also: the filter's precision and
recall against the web split's noise labels, per noise type, and the share of web texts replaced.

Presets: quick (about 5-10 minutes on 2 CPU cores per seed; CI runs it), full (a larger benchmark,
seeds 0,1,2; about 2 hours on 2 CPU cores).

Writes DIR/table.json and DIR/table.md (one row per arm: mean and spread over the seeds) and keeps
every run's directory (DIR/seed-S/...). A rerun into DIR skips every finished step, so a killed run
resumes. stdout: one JSON line at the end; progress on stderr. Exit code 0 when every seed
finished, 1 when one failed (the others still run and make the table), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from openblip.cli import UsageError
from openblip.cli.common import add_command

PRESET_NAMES = ("quick", "full")


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "reproduce", "CapFilt ablation on the synthetic scenes (the paper's Table 1)", __doc__)
    p.add_argument("--preset", required=True, choices=PRESET_NAMES, help="quick (CI, minutes) or full (hours)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (a rerun into it resumes)")
    p.add_argument(
        "--seeds", metavar="S,S,...", help="comma-separated seeds (default: the preset's: quick 0, full 0,1,2)"
    )
    p.add_argument("--device", default="auto", help="auto (cuda, cpu), cpu or cuda (default: auto)")
    p.set_defaults(run=run)


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; anything else is a UsageError naming the bad item."""
    seeds = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit():
            raise UsageError(f"--seeds: {item!r} is not a seed (integers >= 0, comma-separated, e.g. 0,1,2)")
        seeds.append(int(item))
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: {text!r} repeats a seed")
    return seeds


def _say(message: str) -> None:
    print(f"openblip reproduce: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    from openblip.reproduce import PRESETS, reproduce
    from openblip.reproduce.run import check_device, check_out
    from openblip.reproduce.table import table_markdown

    preset = PRESETS[args.preset]  # the one place a preset name becomes its settings
    try:
        check_device(args.device)
        check_out(Path(args.out), preset)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    result = reproduce(preset, args.out, seeds, device=args.device, say=_say)
    if result.table is not None:
        sys.stderr.write(table_markdown(result.table))
        r1 = {row["arm"]: row["r1_mean"]["mean"] for row in result.table["arms"]}
    else:
        r1 = {}
    summary = {
        "out": args.out,
        "preset": preset.name,
        "seeds": result.table["seeds"] if result.table else [],
        "failed_seeds": {str(s): why for s, why in result.failed.items()},
        "table": f"{args.out}/table.json" if result.table else None,
        "r1_mean": r1,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return result.exit_code
