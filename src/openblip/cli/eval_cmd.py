"""`openblip eval --model M --data DIR --task retrieval|caption|vqa`: evaluate a model on a
held-out split and print a JSON summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from openblip.cli import UsageError

TASKS = ("retrieval", "caption", "vqa")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model: retrieval recall@K, caption metrics, VQA accuracy",
        description="Evaluate on a split (webdataset shards, .tar, .jsonl or image folder). Prints one JSON object.",
    )
    parser.add_argument("--model", required=True, help="openblip/transformers directory, Salesforce .pth, ...")
    parser.add_argument("--data", required=True, help="the evaluation split")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N items only (0: all)")
    parser.add_argument("--image-size", type=int, default=0, help="input size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--k-test", type=int, default=128, help="retrieval: candidates re-ranked by ITM")
    parser.add_argument("--beams", type=int, default=3, help="caption: beam size (1: greedy)")
    parser.add_argument("--max-length", type=int, default=30, help="caption: tokens incl. [DEC] and prompt")
    parser.add_argument("--min-length", type=int, default=5)
    parser.add_argument("--prompt", default="a picture of ", help="caption: decoder prompt")
    parser.add_argument("--captions", action="store_true", help="caption: include the generated captions")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # heavy imports here, so that building the parser (`openblip --help`) does not load torch
    from openblip.checkpoint_io import CheckpointError, load_model
    from openblip.device import resolve_device
    from openblip.evaluate.harness import caption_eval, load_eval_items, retrieval_eval, vqa_eval
    from openblip.model.generate import GenerationConfig

    if args.limit < 0 or args.batch_size < 1 or args.k_test < 1 or args.beams < 1:
        raise UsageError("--limit must be >= 0; --batch-size, --k-test and --beams >= 1")
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from e
    try:
        loaded = load_model(args.model, device=device, image_size=args.image_size or None)
    except (CheckpointError, FileNotFoundError) as e:
        raise UsageError(f"cannot load --model {args.model}: {e}") from e
    try:
        items = load_eval_items(args.data, args.limit)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"--data {args.data}: {e}") from e
    model = loaded.model.eval()
    tok = loaded.tokenizer
    out: dict[str, Any] = {"task": args.task, "model": args.model, "data": args.data, "items": len(items)}
    try:
        if args.task == "retrieval":
            out["metrics"] = retrieval_eval(model, tok, items, k_test=args.k_test, batch_size=args.batch_size)
        elif args.task == "caption":
            gen = GenerationConfig(max_length=args.max_length, min_length=args.min_length, num_beams=args.beams)
            scores, captions = caption_eval(
                model, tok, items, generation=gen, prompt=args.prompt, batch_size=args.batch_size
            )
            out["metrics"] = scores
            if args.captions:
                out["captions"] = {it.key: c for it, c in zip(items, captions)}
        else:
            out["metrics"] = vqa_eval(model, tok, items, batch_size=args.batch_size)
    except ValueError as e:
        raise UsageError(str(e)) from e
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0
