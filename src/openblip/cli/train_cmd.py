"""`openblip train CONFIG [--set key=value ...] [--resume]`: run a training config.

Under torchrun (`python -m torch.distributed.run --nproc_per_node N -m openblip train ...`) every
process runs this command; rank 0 writes the run directory and prints the summary."""

from __future__ import annotations

import argparse
import json
from typing import Any

from openblip.cli import UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune BLIP from a config file",
        description="Train with a TOML/JSON config (see configs/). Metrics go to RUN_DIR/metrics.jsonl, "
        "checkpoints to RUN_DIR/checkpoints, the trained model to RUN_DIR/model.",
    )
    parser.add_argument("config", help="a .toml or .json training config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by its dotted key, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # heavy imports here, so that building the parser (`openblip --help`) does not load torch
    from openblip.train.config import ConfigError, load_config
    from openblip.train.distributed import shutdown
    from openblip.train.loop import train

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        raise UsageError(str(e)) from e
    try:
        result = train(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e
    finally:
        shutdown()
    if result.model_dir is not None:
        summary = {
            "run_dir": str(result.run_dir),
            "model": str(result.model_dir),
            "steps": result.steps,
            "seconds": round(result.seconds, 3),
            "last": result.last_metrics,
        }
        print(json.dumps(summary))
    return 0
