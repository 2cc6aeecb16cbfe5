"""`openblip demo [--out DIR] [--images N]`: CapFilt in about a minute, offline.

1. writes a fresh noisy web split of the synthetic scenes (DIR/data/web; its own seed, never
   used to train the shipped models), 40% of its alt-texts corrupted with known labels;
2. runs `openblip bootstrap` on it with the shipped demo models (DIR/bootstrap: scores, cleaned
   shards, stats.json, report.html), as a subprocess of this Python;
3. prints a plain-language summary (demo_models/summary.py) on stdout; progress goes to stderr.

A rerun into the same DIR reuses the split and the finished bootstrap shards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from openblip.cli import UsageError

DEFAULT_OUT = "openblip-demo"
DEFAULT_IMAGES = 200
DEMO_SEED = 2024  # the shipped models were trained on seed 100 and measured on 9000
SAMPLES_PER_SHARD = 100  # a few shards, so an interrupted demo resumes part-way


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="CapFilt on a noisy synthetic web split with the shipped models (offline, ~1 min)",
        description="Write a fresh noisy web split, bootstrap it with the shipped captioner and filter, "
        "and say what the filter caught. A rerun into the same --out reuses finished work.",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: ./%(default)s)")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="web images (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu; default), cpu, cuda, cuda:N or mps")
    parser.set_defaults(run=run)


def _say(message: str) -> None:
    print(f"openblip demo: {message}", file=sys.stderr, flush=True)


def _web_split(out: Path, images: int) -> Path:
    """DIR/data (written once); a DIR/data of other settings is a usage error, not overwritten."""
    from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark

    data = out / "data"
    manifest = data / "manifest.json"
    if manifest.is_file():
        config = json.loads(manifest.read_text(encoding="utf-8"))["config"]
        if config["size"]["web"] != images or config["seed"] != DEMO_SEED:
            raise UsageError(
                f"{data} holds a web split of {config['size']['web']} images (seed {config['seed']}); "
                f"choose another --out, or --images {config['size']['web']}"
            )
        _say(f"reusing the web split in {data / 'web'}")
        return data / "web"
    _say(f"writing {images} web images with noisy alt-texts to {data / 'web'}")
    size = SynthSize(train=0, web=images, test=0)
    write_benchmark(data, SynthConfig(size=size, seed=DEMO_SEED, samples_per_shard=SAMPLES_PER_SHARD))
    return data / "web"


def _bootstrap(web: Path, out: Path, device: str) -> int:
    command = [
        sys.executable,
        "-m",
        "openblip",
        "bootstrap",
        str(web),
        "--out",
        str(out),
        "--captioner",
        "synthetic-caption",
        "--filter",
        "synthetic-filter",
        "--seed",
        "0",
        "--device",
        device,
    ]
    _say("bootstrapping: the captioner writes a caption per image, the filter scores every text (ITM)")
    # stderr (progress, errors) passes through; bootstrap's JSON summary on stdout is kept in a
    # file, as this command's stdout is the plain-language summary
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "bootstrap.json", "wb") as summary:
        return subprocess.run(command, stdout=summary, check=False).returncode


def run(args: argparse.Namespace) -> int:
    if args.images < 10:
        raise UsageError(f"--images must be >= 10 (a few of each noise type), got {args.images}")
    from openblip.demo_models.summary import summary_text

    start = time.time()
    out = Path(args.out)
    try:
        web = _web_split(out, args.images)
    except OSError as e:
        raise UsageError(f"cannot write the demo split into {out}: {e}") from e
    boot = out / "bootstrap"
    code = _bootstrap(web, boot, args.device)
    stats_path = boot / "stats.json"
    if code == 2 or not stats_path.is_file():
        _say(f"openblip bootstrap failed (exit code {code}); see its messages above")
        return 2 if code == 2 else 1
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    sys.stdout.write(summary_text(out, boot, DEMO_SEED, stats))
    _say(f"done in {time.time() - start:.0f} s")
    return code
