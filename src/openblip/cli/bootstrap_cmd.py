"""`openblip bootstrap INPUT... --out DIR --captioner M --filter M`: CapFilt (BLIP section 3.3).

The captioner writes synthetic captions for every image (nucleus sampling, top-p 0.9, one per
image by default, as the paper; --num-beams for beam search), the filter scores the web text and
every synthetic text with ITM (probability of match) and ITC (cosine); a text is kept when its ITM
is above --threshold. `--captioner none` filters the web texts alone (an audit).

INPUT: webdataset shard directories, .tar files, globs and brace ranges (web/{00000..00009}.tar),
.jsonl / .parquet lists of {image path or bytes, caption}, or image folders with .txt sidecars.

Writes, per input shard NAME: DIR/scores/NAME.parquet (a row per sample: key, shard, web_text,
web_itm, web_itc, web_kept, synthetic_texts, synthetic_itm, synthetic_itc, synthetic_kept, error,
meta), DIR/shards/NAME.tar (the kept pairs, for `openblip train --set data.train=DIR/shards`);
then DIR/stats.json and DIR/report.html. A shard's outputs appear whole or not at all; a rerun
skips finished shards. stdout: one JSON line summing the run. Exit code 0 when every sample and
shard was processed, 1 when any failed (recorded in stats.json), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from openblip.cli import UsageError
from openblip.cli.common import add_command, finite_float, max_pixels

ENGINES = ("local", "ray")


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "bootstrap", "CapFilt: caption and filter a web dataset", __doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="shards, lists or image folders (see above)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (a rerun into it resumes)")
    m = p.add_argument_group("models")
    m.add_argument(
        "--captioner", required=True, metavar="M", help="caption checkpoint, or 'none' (audit the web texts)"
    )
    m.add_argument("--filter", required=True, metavar="M", help="retrieval / ITM checkpoint (ITM + ITC heads)")
    m.add_argument("--tokenizer", help="vocab.txt / tokenizer.json / directory (default: each checkpoint's)")
    m.add_argument("--image-size", type=int, help="input size in pixels (default: each checkpoint's)")
    m.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N (default: auto)")
    m.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="default: %(default)s")
    c = p.add_argument_group("captions and filter")
    c.add_argument("--num-captions", type=int, default=1, help="synthetic captions per image (default: 1)")
    how = c.add_mutually_exclusive_group()
    how.add_argument("--num-beams", type=int, help="beam search with K beams instead of nucleus sampling")
    how.add_argument("--sample", action="store_true", help="nucleus sampling (the default)")
    c.add_argument("--top-p", type=finite_float, default=0.9, help="sampling: nucleus mass (default: %(default)s)")
    c.add_argument("--threshold", type=finite_float, default=0.5, help="keep a text when ITM > T (default: 0.5)")
    c.add_argument(
        "--seed", type=int, default=0, help="sampling seed; each sample's stream is keyed by its key (default: 0)"
    )
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=16, help="images per model batch (default: %(default)s)")
    r.add_argument("--workers", type=int, default=2, help="image-decoding processes, 0 = none (default: 2)")
    r.add_argument("--engine", choices=ENGINES, default="local", help="local, or ray (Ray Data) (default: local)")
    r.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (e.g. auto); default: a local instance")
    r.add_argument("--ray-num-cpus", type=int, help="CPUs of a local Ray instance (default: all)")
    r.add_argument("--limit", type=int, metavar="N", help="stop after N samples (in shard order; local engine)")
    r.add_argument("--max-pixels", type=int, help="refuse larger images (default: $OPENBLIP_MAX_PIXELS or PIL's limit)")
    p.set_defaults(run=run)


def _config(args: argparse.Namespace) -> Any:
    from openblip.bootstrap import BootstrapConfig, CaptionSettings

    if args.ray_address and args.engine != "ray":
        raise UsageError("--ray-address needs --engine ray")
    for flag, value in (("--num-captions", args.num_captions), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    captioner = None if args.captioner.lower() == "none" else args.captioner
    try:
        return BootstrapConfig(
            out=args.out,
            filter=args.filter,
            captioner=captioner,
            caption=CaptionSettings(
                num_captions=args.num_captions, num_beams=args.num_beams, top_p=args.top_p, seed=args.seed
            ),
            threshold=args.threshold,
            tokenizer=args.tokenizer,
            image_size=args.image_size,
            max_pixels=max_pixels(args),
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
            workers=args.workers,
            limit=args.limit,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e


class _Progress:
    """A tqdm bar on stderr when it is a terminal; otherwise a line every `every` seconds."""

    def __init__(self, every: float = 30.0) -> None:
        from tqdm import tqdm

        self.tty = sys.stderr.isatty()
        self.bar = tqdm(desc="bootstrap", unit="sample", file=sys.stderr, disable=not self.tty)
        self.every, self.start, self.last = every, time.monotonic(), time.monotonic()
        self.samples = self.kept = self.texts = 0

    def update(self, samples: int, web_kept: int, texts_kept: int, texts: int) -> None:
        self.samples += samples
        self.kept += texts_kept
        self.texts += texts
        ratio = self.kept / self.texts if self.texts else 0.0
        if self.tty:
            self.bar.set_postfix(kept=f"{ratio:.1%}", refresh=False)
            self.bar.update(samples)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.samples / max(now - self.start, 1e-9)
            print(
                f"bootstrap: {self.samples} samples, {rate:.1f} samples/s, kept {ratio:.1%} of texts", file=sys.stderr
            )

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    from openblip.bootstrap import RayOptions, bootstrap
    from openblip.device import resolve_device

    cfg = _config(args)
    try:
        resolve_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device {args.device}: {e}") from e
    ray = RayOptions(args.ray_address, args.ray_num_cpus) if args.engine == "ray" else None
    progress = _Progress()
    try:
        result = bootstrap(cfg, args.inputs, ray=ray, progress=progress)
    except (OSError, ValueError, ImportError) as e:  # no such input, unusable model, a resume with other settings
        raise UsageError(str(e)) from e
    finally:
        progress.close()
    s = result.stats
    summary = {
        "out": args.out,
        "samples": s["samples"],
        "errors": s["errors"]["total"],
        "shards": s["shards"]["total"],
        "shards_failed": len(s["shards"]["failed"]),
        "web_kept": s["web"]["kept"],
        "web_dropped": s["web"]["dropped"],
        "synthetic_kept": s["synthetic"]["kept"],
        "synthetic_dropped": s["synthetic"]["dropped"],
        "samples_per_s": s["throughput"]["samples_per_s"]["end_to_end"],
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return result.exit_code
