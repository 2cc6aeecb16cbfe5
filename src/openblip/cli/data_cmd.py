"""`openblip data synth`: write the offline synthetic-scenes benchmark (train / web / test shards)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from openblip.cli import UsageError
from openblip.data.scene import MIN_IMAGE_SIZE
from openblip.data.synthetic import NAMED_SIZES, SynthConfig, SynthSize, write_benchmark


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="datasets: write the synthetic benchmark")
    parser.set_defaults(run=_no_action)
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    synth = actions.add_parser(
        "synth",
        help="write the synthetic-scenes benchmark",
        description="Write OUT/train, OUT/web (noisy alt-texts), OUT/test as webdataset shards, and OUT/manifest.json.",
    )
    synth.add_argument(
        "--out", required=True, help="output directory (not one holding a benchmark; an interrupted write is redone)"
    )
    sizes = synth.add_mutually_exclusive_group()
    # default None, not "ci": argparse ignores a mutually exclusive option given its default value
    sizes.add_argument("--size", choices=sorted(NAMED_SIZES), help="named size (default: ci)")
    sizes.add_argument("--num-images", type=int, help="total images instead: 45%% train, 45%% web, 10%% test")
    synth.add_argument("--image-size", type=int, default=SynthConfig.image_size, help="pixels (default: %(default)s)")
    synth.add_argument(
        "--web-noise", type=float, default=SynthConfig.web_noise, help="corrupted web fraction (default: %(default)s)"
    )
    synth.add_argument("--seed", type=int, default=SynthConfig.seed, help="default: %(default)s")
    synth.add_argument(
        "--samples-per-shard", type=int, default=SynthConfig.samples_per_shard, help="default: %(default)s"
    )
    synth.set_defaults(run=run_synth)


def _no_action(args: argparse.Namespace) -> int:
    raise UsageError("choose an action: synth")


def _config(args: argparse.Namespace) -> SynthConfig:
    if args.num_images is not None and args.num_images < 1:
        raise UsageError(f"--num-images must be >= 1, got {args.num_images}")
    if args.image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"--image-size must be >= {MIN_IMAGE_SIZE}, got {args.image_size}")
    if not 0.0 <= args.web_noise <= 1.0:
        raise UsageError(f"--web-noise must be in [0, 1], got {args.web_noise}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.samples_per_shard < 1:
        raise UsageError(f"--samples-per-shard must be >= 1, got {args.samples_per_shard}")
    size = SynthSize.from_total(args.num_images) if args.num_images is not None else NAMED_SIZES[args.size or "ci"]
    return SynthConfig(size, args.image_size, args.web_noise, args.seed, args.samples_per_shard)


def run_synth(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        manifest = write_benchmark(args.out, config)
    except FileExistsError as e:
        raise UsageError(str(e)) from e
    splits = manifest["splits"]
    summary = {
        "out": args.out,
        "images": {name: s["images"] for name, s in splits.items()},
        "shards": {name: s["shards"] for name, s in splits.items()},
        "web_noise": splits["web"]["noise"],
        "seed": config.seed,
        "image_size": config.image_size,
        "seconds": manifest["seconds"],
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
