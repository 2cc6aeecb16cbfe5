"""The offline synthetic-scenes benchmark: seeded images of coloured shapes with exact captions.

Learning is measured exactly, without any download: retrieval R@1 and caption attribute F1 on the
test split against known scene graphs, and CapFilt by whether it removes the web split's labelled
noisy alt-texts (`web_noise`).

Every example is a pure function of (seed, split, index): its scene, captions, questions and
pixels come from generators seeded by `SeedSequence(seed, spawn_key=(split, index))`, so the same
seed gives byte-identical images and texts whatever the split sizes, and examples can be made in
any order or in parallel.

On disk (`write_benchmark`):
  OUT/train/  clean captions: text = a complete reference caption, json = all five + scene + QA
  OUT/web/    one alt-text per image, a fraction corrupted; json["noise"] labels it
  OUT/test/   held-out images: json has the five references, the scene graph and the QA
  OUT/manifest.json  sizes, seed, image size, noise rate, noise counts, vocabulary
each split a directory of webdataset shards in img2dataset's layout (`shard_writer`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from openblip.data import vocab
from openblip.data.grammar import reference_captions
from openblip.data.qa import QA, scene_questions
from openblip.data.render import encode_jpeg, render_scene
from openblip.data.scene import SceneGraph, sample_scene
from openblip.data.shard_writer import ShardWriter
from openblip.data.web_noise import WebNoise, plan_web_noise, web_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
INCOMPLETE = ".incomplete"  # present in OUT while a write is under way
_PLAN_KEY = 1000  # spawn_key of the web split's noise plan, apart from every (split, index)
_OTHER_IMAGE_TRIES = 20


class Split(enum.Enum):
    TRAIN = 0
    WEB = 1
    TEST = 2

    @property
    def dirname(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class SynthSize:
    train: int
    web: int
    test: int

    def __post_init__(self) -> None:
        if min(self.train, self.web, self.test) < 0:
            raise ValueError(f"split sizes must be >= 0: {self}")

    @classmethod
    def from_total(cls, n: int) -> SynthSize:
        """n images in all: 45% train, 45% web, 10% test (at least one test image when n >= 3)."""
        if n < 1:
            raise ValueError(f"number of images must be >= 1, got {n}")
        test = max(1 if n >= 3 else 0, n // 10)
        train = (n - test + 1) // 2
        return cls(train, n - test - train, test)

    def of(self, split: Split) -> int:
        return (self.train, self.web, self.test)[split.value]


NAMED_SIZES: dict[str, SynthSize] = {
    "ci": SynthSize(train=200, web=200, test=100),
    "small": SynthSize(train=2000, web=2000, test=500),
    "bench": SynthSize(train=25000, web=25000, test=2000),
}


@dataclass(frozen=True)
class SynthConfig:
    size: SynthSize = NAMED_SIZES["ci"]
    image_size: int = 96  # 3x3 grid of 32 px cells: a small object is 16 px, shapes stay legible
    web_noise: float = 0.4  # fraction of web alt-texts corrupted (LAION-like; BLIP's filter removes ~this)
    seed: int = 0
    samples_per_shard: int = 1000

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.web_noise <= 1.0:
            raise ValueError(f"web_noise must be in [0, 1], got {self.web_noise}")
        if self.samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {self.samples_per_shard}")


@dataclass(frozen=True)
class SynthExample:
    split: Split
    index: int
    scene: SceneGraph
    references: tuple[str, ...]
    questions: tuple[QA, ...]


class _Streams(NamedTuple):
    """Independent generators for the parts of one example: drawing more of one never shifts another."""

    scene: np.random.Generator
    captions: np.random.Generator
    questions: np.random.Generator
    pixels: np.random.Generator
    web_text: np.random.Generator


def _streams(seed: int, split: Split, index: int) -> _Streams:
    children = np.random.SeedSequence(seed, spawn_key=(split.value, index)).spawn(len(_Streams._fields))
    return _Streams(*(np.random.default_rng(c) for c in children))


def make_example(seed: int, split: Split, index: int, image_size: int) -> SynthExample:
    """Scene graph, five references and QA of one example (no pixels: cheap)."""
    rngs = _streams(seed, split, index)
    scene = sample_scene(rngs.scene, image_size)
    return SynthExample(
        split, index, scene, reference_captions(scene, rngs.captions), scene_questions(scene, rngs.questions)
    )


def render_example(seed: int, example: SynthExample) -> bytes:
    """The example's JPEG bytes."""
    return encode_jpeg(render_scene(example.scene, _streams(seed, example.split, example.index).pixels))


def _other_caption(config: SynthConfig, example: SynthExample, n: int, rng: np.random.Generator) -> str | None:
    """A reference of another web image sharing no (colour, shape) with this one, so it is false here."""
    if n < 2:
        return None
    mine = set(example.scene.kinds())
    for _ in range(_OTHER_IMAGE_TRIES):
        j = int(rng.integers(0, n - 1))
        j += j >= example.index
        other = make_example(config.seed, Split.WEB, j, config.image_size)
        if mine.isdisjoint(other.scene.kinds()):
            return other.references[int(rng.integers(0, len(other.references)))]
    return None


def web_noise_plan(config: SynthConfig) -> list[WebNoise]:
    n = config.size.web
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_PLAN_KEY,)))
    return plan_web_noise(n, config.web_noise, rng)


def example_record(config: SynthConfig, example: SynthExample, noise: WebNoise) -> tuple[str, dict[str, Any]]:
    """The text and json metadata stored for an example. Train and test texts are reference 0 (a
    complete listing); web texts follow `noise`, which may fall back to generic (see `web_text`)."""
    text, label = example.references[0], WebNoise.CLEAN
    if example.split is Split.WEB:
        web_rng = _streams(config.seed, example.split, example.index).web_text
        text, label = web_text(
            noise,
            example.references,
            example.scene,
            web_rng,
            lambda: _other_caption(config, example, config.size.web, web_rng),
        )
    meta = {
        "split": example.split.dirname,
        "index": example.index,
        "noise": label.value,
        "references": list(example.references),
        "qa": [q.to_json() for q in example.questions],
        "scene": example.scene.to_json(),
    }
    return text, meta


def _write_split(out: Path, config: SynthConfig, split: Split) -> tuple[int, Counter[str]]:
    n = config.size.of(split)
    plan = web_noise_plan(config) if split is Split.WEB else [WebNoise.CLEAN] * n
    labels: Counter[str] = Counter()
    with ShardWriter(out / split.dirname, config.samples_per_shard) as writer:
        for i in range(n):
            example = make_example(config.seed, split, i, config.image_size)
            text, meta = example_record(config, example, plan[i])
            labels[meta["noise"]] += 1
            writer.write(render_example(config.seed, example), text, meta)
    log.info("%s: %d images in %d shards", split.dirname, n, len(writer.shards))
    return len(writer.shards), labels


def write_benchmark(out_dir: str | Path, config: SynthConfig) -> dict[str, Any]:
    """Write all three splits and `manifest.json` (last, atomically: its presence means complete).
    Refuses a directory that already holds a manifest or any split, except the splits of a write
    that was interrupted (marked by OUT/.incomplete until the manifest is in place): those are
    written again. Returns the manifest."""
    out = Path(out_dir)
    marker = out / INCOMPLETE
    if marker.is_file() and not (out / "manifest.json").exists():
        log.warning("%s holds an interrupted write: writing it again", out)
        for split in Split:
            shutil.rmtree(out / split.dirname, ignore_errors=True)
    for name in ["manifest.json", *(s.dirname for s in Split)]:
        if (out / name).exists():
            raise FileExistsError(f"{out / name} already exists; choose an empty output directory")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("openblip data synth: this write did not finish; running it again redoes it\n")
    start = time.time()
    splits: dict[str, Any] = {}
    for split in Split:
        shards, labels = _write_split(out, config, split)
        noise = dict(sorted(labels.items()))
        splits[split.dirname] = {"images": config.size.of(split), "shards": shards, "noise": noise}
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": dataclasses.asdict(config),
        "splits": splits,
        "vocabulary": {
            "colours": list(vocab.COLOURS),
            "shapes": list(vocab.SHAPES),
            "sizes": list(vocab.SIZES),
            "backgrounds": list(vocab.BACKGROUNDS),
            "regions": list(vocab.REGIONS.values()),
            "relations": list(vocab.RELATIONS),
        },
        "seconds": round(time.time() - start, 3),
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / "manifest.json")
    marker.unlink()
    return manifest
