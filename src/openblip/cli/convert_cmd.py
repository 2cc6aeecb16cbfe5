"""`openblip convert SRC --out DST`: rewrite BLIP weights in our format or transformers'.

SRC is anything `load_model` reads (transformers directory, Salesforce .pth, openblip
directory, hub id, URL). Prints one JSON summary line on stdout. Exit 2 for usage and input
errors (bad arguments, an output directory that is not empty, a SRC that is not a usable
model), as every command; 1 when writing the output fails.

A pre-training model (what `openblip train` writes by default) holds a captioning model and a
retrieval model, and transformers has a class for each but none for both: --task caption or
--task retrieval exports that one (it also makes a smaller openblip-format model).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from openblip.cli import UsageError

log = logging.getLogger(__name__)

FORMATS = ("openblip", "hf")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert checkpoints between the Salesforce, transformers and openblip formats",
        description=(
            "Load BLIP weights from SRC (a transformers directory, a Salesforce .pth, an openblip directory, "
            "a hub id such as Salesforce/blip-image-captioning-base, or an http(s) URL) and write them to DST."
        ),
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint to read")
    parser.add_argument("--out", required=True, metavar="DST", help="output directory (new or empty)")
    parser.add_argument("--format", choices=FORMATS, default="openblip", help="output format (default: %(default)s)")
    parser.add_argument("--tokenizer", metavar="PATH", help="vocab.txt, tokenizer.json or a directory holding one")
    parser.add_argument("--image-size", type=int, metavar="S", help="resize the position embeddings for S x S inputs")
    parser.add_argument(
        "--task",
        choices=("caption", "retrieval"),
        help="write only this model of SRC: its decoder (caption, BlipForConditionalGeneration) or its encoder "
        "and ITC/ITM heads (retrieval, BlipForImageTextRetrieval); needed to export a pre-training model to hf",
    )
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> Path:
    if args.image_size is not None and args.image_size <= 0:
        raise UsageError(f"--image-size must be positive, got {args.image_size}")
    if args.tokenizer is not None and not Path(args.tokenizer).exists():
        raise UsageError(f"--tokenizer {args.tokenizer}: no such file or directory")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty directory")
    if Path(args.src).exists() and Path(args.src).resolve() == out.resolve():
        raise UsageError("--out must differ from SRC")
    return out


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: they load torch, which `openblip --help` does not need
    from openblip.checkpoint_io import export_hf, extract, layout_name, load_model, save_pretrained
    from openblip.convert.fetch import SourceUnavailable
    from openblip.convert.hf import architecture

    out = _check(args)
    start = time.perf_counter()
    try:  # what is read: a bad source is a usage error, as in every command
        loaded = load_model(args.src, tokenizer=args.tokenizer, image_size=args.image_size)
        model = extract(loaded.model, args.task) if args.task else loaded.model
        if args.format == "hf":
            architecture(model.cfg)  # a layout transformers cannot hold: said before anything is written
    except (SourceUnavailable, OSError, ValueError) as e:  # CheckpointError is a ValueError
        raise UsageError(f"{args.src}: {e}" if str(args.src) not in str(e) else str(e)) from e
    try:  # what is written
        if args.format == "hf":
            export_hf(model, loaded.tokenizer, out)
        else:
            save_pretrained(model, loaded.tokenizer, out)
    except (OSError, ValueError) as e:
        print(f"openblip convert: error: writing {out} failed: {e}", file=sys.stderr)
        return 1
    cfg = model.cfg
    summary = {
        "source": args.src,
        "source_format": loaded.source.format.value,
        "out": str(out),
        "format": args.format,
        "layout": layout_name(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "image_size": cfg.vision.image_size,
        "notes": list(loaded.source.notes),
        "seconds": round(time.perf_counter() - start, 3),
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
