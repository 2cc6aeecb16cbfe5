"""The work of each step: the benchmark, a training run, a bootstrap run, an evaluation.

Each function does its work in a step directory and returns a JSON-able summary (steps.py stores
it in DONE.json). Captioner and filter are one pre-training-layout model fine-tuned with ITC + ITM
+ LM on the clean split, as the shipped demo models: one training run instead of two in a
budget that is mostly training, and one ViT pass per image shared by both roles in bootstrap. Its
LM was trained without a prompt (the pre-training objective has none), so it captions with none.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from openblip.data.synthetic import SynthConfig, write_benchmark
from openblip.reproduce.arms import BootstrapRun, read_score_rows
from openblip.reproduce.presets import Budget, Preset
from openblip.reproduce.steps import Say
from openblip.train.config import (
    DataSection,
    Decay,
    ObjectiveKind,
    ObjectiveSection,
    OptimSection,
    RunSection,
    ScheduleSection,
    TrainConfig,
)

log = logging.getLogger(__name__)

CAPTION_PROMPT = ""  # the pre-training LM is trained without one
EVAL_METRICS = ("txt_r1", "txt_r5", "img_r1", "img_r5")


def benchmark(step_dir: Path, preset: Preset, seed: int) -> dict[str, Any]:
    """The seed's synthetic-scenes benchmark (write_benchmark redoes an interrupted write; its
    manifest, written last, means the write was complete)."""
    manifest_path = step_dir / "manifest.json"
    if manifest_path.is_file():
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        return {"splits": manifest["splits"], "seed": seed}
    config = SynthConfig(
        size=preset.data,
        image_size=preset.model.image_size,
        web_noise=preset.web_noise,
        seed=seed,
        samples_per_shard=preset.samples_per_shard,
    )
    manifest = write_benchmark(step_dir, config)
    return {"splits": manifest["splits"], "seed": seed}


def train_config(
    preset: Preset, budget: Budget, data: Path, run_dir: Path, seed: int, init_from: Path | None
) -> TrainConfig:
    """A pre-training-layout run (ITC + ITM + LM) of `budget` on `data`. The epoch count is left
    open and budget.steps ends the run, so arms with more or fewer pairs train for the same steps
    of the same batch: the same compute."""
    model = dataclasses.replace(preset.model, init_from=str(init_from) if init_from is not None else "")
    return TrainConfig(
        model=model,
        data=DataSection(
            train=str(data),
            batch_size=budget.batch_size,
            max_length=preset.caption_max_length,
            pad_to_max=False,  # one process: pad to the longest caption
            augment=False,  # crops would cut out the objects a caption names
            hflip=False,  # captions say left/right
            # Clean images train on their complete listing (reference 0), the test's texts: the
            # partial references ("the background is grey") fit many images, which a tiny model
            # from scratch cannot tell apart in a short run.
            random_reference=False,
        ),
        optim=OptimSection(lr=budget.lr, weight_decay=0.05),
        schedule=ScheduleSection(
            epochs=1_000_000,
            max_steps=budget.steps,
            warmup_steps=budget.warmup_steps,
            warmup_lr=1e-6,
            decay=Decay.COSINE,
            min_lr=budget.min_lr,
            per_epoch=False,
        ),
        objective=ObjectiveSection(
            kind=ObjectiveKind.PRETRAIN,
            queue_size=budget.queue_size,
            momentum=budget.momentum,
            alpha=budget.alpha,
            alpha_ramp_epochs=1.0,
        ),
        run=RunSection(
            out_dir=str(run_dir),
            seed=seed,
            log_every=max(1, budget.steps // 10),
            ckpt_every=preset.ckpt_every,
            keep_last=1,
        ),
    )


def train_run(step_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    """Train into step_dir, continuing from its last checkpoint when a killed attempt left one."""
    from openblip.train import train

    result = train(cfg, resume=True)
    return {"steps": result.steps, "last": result.last_metrics, "seconds": round(result.seconds, 1)}


class _BootstrapProgress:
    """bootstrap's progress as a line through `say` at most every `every` seconds."""

    def __init__(self, say: Say, name: str, total: int, every: float = 30.0) -> None:
        self.say, self.name, self.total, self.every = say, name, total, every
        self.samples = 0
        self.last = time.monotonic()

    def update(self, samples: int, web_kept: int, texts_kept: int, texts: int) -> None:
        self.samples += samples
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.say(f"{self.name}: {self.samples}/{self.total} web samples")


def bootstrap_run(
    step_dir: Path,
    preset: Preset,
    which: BootstrapRun,
    model: Path,
    web: Path,
    seed: int,
    device: str,
    say: Say,
) -> dict[str, Any]:
    """`openblip bootstrap` of the web split by the fine-tuned model (captioner and filter), through
    its Python API; it skips the shards a killed attempt finished. Returns the filter's precision
    and recall against the web split's noise labels and the shares of web texts kept and replaced."""
    from openblip.bootstrap import BootstrapConfig, CaptionSettings, bootstrap

    caption = CaptionSettings(
        num_beams=preset.num_beams if which is BootstrapRun.BEAM else None,
        top_p=preset.top_p,
        max_length=preset.caption_max_length,
        prompt=CAPTION_PROMPT,
        seed=seed,
    )
    cfg = BootstrapConfig(
        out=str(step_dir),
        filter=str(model),
        captioner=None if which is BootstrapRun.FILTER else str(model),
        caption=caption,
        threshold=preset.threshold,
        device=device,
        workers=0,  # tiny images and models: decoding in other processes costs more than it saves
    )
    result = bootstrap(cfg, [str(web)], progress=_BootstrapProgress(say, f"bootstrap ({which.value})", preset.data.web))
    stats = result.stats
    if result.exit_code != 0:
        raise RuntimeError(f"bootstrap {which.value} failed on some samples or shards: see {step_dir / 'stats.json'}")
    rows = read_score_rows(step_dir).values()
    used = len(rows)
    replaced = sum(1 for r in rows if not r.web_kept and any(r.synthetic_kept))
    noise = stats["noise"] or {}
    return {
        "samples": stats["samples"],
        "web_kept": stats["web"]["kept"],
        "web_kept_share": stats["web"]["kept"] / used if used else None,
        "replaced_share": replaced / used if used else None,
        "synthetic_kept": stats["synthetic"]["kept"],
        "synthetic_dropped": stats["synthetic"]["dropped"],
        "filter_precision": noise.get("precision"),
        "filter_recall": noise.get("recall"),
        "dropped_share_by_noise": {k: v["dropped_share"] for k, v in noise.get("by_type", {}).items()},
    }


def evaluate(model_dir: Path, test: Path, preset: Preset, device: str) -> dict[str, Any]:
    """Retrieval R@1 / R@5 both ways between the first preset.eval_images test images and their
    complete listings (reference 0: one text per image, as demo_models/quality.py; the partial
    references fit many images), ITC top k re-ranked by ITM; and beam-search captions: CIDEr-D
    against all five references, and attribute F1 against the scene graphs."""
    from openblip.checkpoint_io import load_model
    from openblip.evaluate.harness import caption_eval, load_eval_items, retrieval_eval
    from openblip.model.generate import GenerationConfig

    loaded = load_model(model_dir, device=device)
    model = loaded.model.eval()
    items = load_eval_items(test, preset.eval_images)
    listings = [dataclasses.replace(it, references=it.references[:1]) for it in items]
    retrieval = retrieval_eval(model, loaded.tokenizer, listings, k_test=preset.k_test)
    generation = GenerationConfig(max_length=preset.caption_max_length, min_length=5, num_beams=3)
    captions, _ = caption_eval(model, loaded.tokenizer, items, generation=generation, prompt=CAPTION_PROMPT)
    out: dict[str, Any] = {k: retrieval[k] for k in EVAL_METRICS}
    out["r1_mean"] = (retrieval["txt_r1"] + retrieval["img_r1"]) / 2
    out["chance_r1"] = retrieval["chance_r1"]
    out["cider"] = captions["CIDEr"]
    out["attribute_f1"] = captions.get("attribute_f1")
    out["images"] = len(items)
    return out
