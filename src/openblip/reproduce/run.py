"""`reproduce(...)`: BLIP's CapFilt loop on the synthetic scenes, per seed, then the table.

DIR/reproduce.json               the preset (a rerun with another preset is refused)
DIR/seed-S/data/                 the seed's benchmark: train (clean), web (noisy), test
DIR/seed-S/arms/no_capfilt/      data/ (clean + web), run/ (step 1: pre-training; the no-CapFilt arm)
DIR/seed-S/finetune/             step 2: captioner + filter, from step 1's model, on the clean split
DIR/seed-S/bootstrap/RUN/        step 3: `openblip bootstrap` of the web split (filter, nucleus, beam)
DIR/seed-S/arms/ARM/             step 4: data/ (clean + bootstrapped web), run/ (pre-training from
                                 scratch, step 1's budget and seed); step 5: eval/ for every arm
DIR/table.json, DIR/table.md     one row per arm over the seeds
Every step directory gets DONE.json when its outputs are complete (steps.py): a rerun skips it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from openblip.reproduce import stages
from openblip.reproduce.arms import Arm, BootstrapRun, arms_needing, read_score_rows, write_arm_data
from openblip.reproduce.presets import Preset
from openblip.reproduce.steps import Say, run_step
from openblip.reproduce.table import build_table, write_table

log = logging.getLogger(__name__)

SETTINGS_FILE = "reproduce.json"


def _say_nothing(message: str) -> None:
    log.info("%s", message)


def preset_record(preset: Preset) -> dict[str, Any]:
    """The preset as JSON (arms by value): what decides every output of the run."""
    record: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(preset), default=_enum_value))
    return record


def _enum_value(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(f"not JSON: {obj!r}")


def check_out(out: Path, preset: Preset) -> None:
    """Refuse (ValueError) an output directory holding a run of other settings; record ours.
    Seeds are not part of them: a rerun may add seeds."""
    mine = {k: v for k, v in preset_record(preset).items() if k != "seeds"}
    settings = out / SETTINGS_FILE
    if settings.is_file():
        before = json.loads(settings.read_text(encoding="utf-8"))
        before.pop("seeds", None)
        if before != mine:
            changed = sorted(k for k in mine.keys() | before.keys() if mine.get(k) != before.get(k))
            raise ValueError(
                f"{out} holds a reproduce run with other settings ({', '.join(changed)} differ; "
                f"preset {before.get('name')!r}): choose another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{SETTINGS_FILE}.tmp"
    tmp.write_text(json.dumps(mine, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(settings)


@dataclasses.dataclass(frozen=True)
class SeedResult:
    evals: dict[Arm, dict[str, Any]]
    pairs: dict[Arm, dict[str, Any]]  # each arm's training-set counts
    bootstraps: dict[BootstrapRun, dict[str, Any]]


def run_seed(preset: Preset, root: Path, seed: int, device: str, say: Say) -> SeedResult:
    """Steps 1-5 of one seed (each skipped when finished before)."""

    def step(path: Path, name: str, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        return run_step(path, f"seed {seed}: {name}", work, say)

    data = root / "data"
    step(data, "benchmark", lambda d: stages.benchmark(d, preset, seed))
    clean, web, test = data / "train", data / "web", data / "test"

    def arm_data(arm: Arm, rows: Any) -> dict[str, Any]:
        where = root / "arms" / arm.value / "data"
        return step(
            where,
            f"{arm.label}: training data",
            lambda d: write_arm_data(d, arm, clean, web, rows, preset.samples_per_shard),
        )

    def arm_train(arm: Arm) -> Path:
        run_dir = root / "arms" / arm.value / "run"
        cfg = stages.train_config(preset, preset.pretrain, root / "arms" / arm.value / "data", run_dir, seed, None)
        step(run_dir, f"{arm.label}: pre-training ({preset.pretrain.steps} steps)", lambda d: stages.train_run(d, cfg))
        return run_dir / "model"

    pairs = {Arm.NO_CAPFILT: arm_data(Arm.NO_CAPFILT, None)}
    models = {Arm.NO_CAPFILT: arm_train(Arm.NO_CAPFILT)}  # step 1

    finetune_dir = root / "finetune"
    cfg = stages.train_config(preset, preset.finetune, clean, finetune_dir, seed, models[Arm.NO_CAPFILT])
    step(finetune_dir, "captioner + filter: fine-tuning on the clean split", lambda d: stages.train_run(d, cfg))
    capfilt = finetune_dir / "model"

    bootstraps: dict[BootstrapRun, dict[str, Any]] = {}
    for which in arms_needing(preset.arms):
        where = root / "bootstrap" / which.value
        bootstraps[which] = step(
            where,
            f"bootstrap ({which.value})",
            functools.partial(
                stages.bootstrap_run,
                preset=preset,
                which=which,
                model=capfilt,
                web=web,
                seed=seed,
                device=device,
                say=say,
            ),
        )
    for arm in preset.arms:
        if arm.bootstrap is None:  # no CapFilt: trained as step 1
            continue
        rows = read_score_rows(root / "bootstrap" / arm.bootstrap.value)
        pairs[arm] = arm_data(arm, rows)
        models[arm] = arm_train(arm)

    def arm_eval(arm: Arm) -> dict[str, Any]:
        work = functools.partial(stages.evaluate, model_dir=models[arm], test=test, preset=preset, device=device)
        return step(root / "arms" / arm.value / "eval", f"{arm.label}: evaluation", lambda d: work())

    evals = {arm: arm_eval(arm) for arm in preset.arms}
    return SeedResult(evals, pairs, bootstraps)


def check_device(device: str) -> str:
    """The device of every step, by name. Training takes the GPU whenever one is visible (as
    `openblip train` does), so the other steps must run there too: a ValueError says how to choose."""
    import torch

    from openblip.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu" and torch.cuda.is_available():
        raise ValueError("training runs on the GPU when one is visible: set CUDA_VISIBLE_DEVICES= to use the CPU")
    if dev.type == "cuda" and (dev.index or 0) != 0:
        raise ValueError(f"training runs on the first visible GPU: choose {device} with CUDA_VISIBLE_DEVICES")
    if dev.type == "mps":
        raise ValueError("training does not run on MPS: use --device cpu")
    return str(dev)


@dataclasses.dataclass(frozen=True)
class ReproduceResult:
    table: dict[str, Any] | None  # None when no seed finished
    failed: dict[int, str]  # seed -> why it stopped

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def reproduce(
    preset: Preset,
    out: str | Path,
    seeds: Sequence[int] | None = None,
    *,
    device: str = "auto",
    say: Say = _say_nothing,
) -> ReproduceResult:
    """Run (or resume) the ablation for `seeds` (default: the preset's) into `out`, then write the
    table of the seeds that finished. A seed that fails (an error in one of its steps) is recorded
    and the others go on; its finished steps stay for a rerun. ValueError before anything runs:
    bad seeds or device, or `out` holds a run of other settings."""
    seeds = tuple(preset.seeds if seeds is None else seeds)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    device = check_device(device)
    root = Path(out)
    check_out(root, preset)
    results: dict[int, SeedResult] = {}
    failed: dict[int, str] = {}
    for s in seeds:
        try:
            results[s] = run_seed(preset, root / f"seed-{s}", s, device, say)
        except (OSError, ValueError, RuntimeError) as e:
            log.exception("seed %d failed", s)
            failed[s] = f"{type(e).__name__}: {e}"
            say(f"seed {s} failed ({failed[s]}); going on with the other seeds")
    if not results:
        return ReproduceResult(None, failed)
    done = [s for s in seeds if s in results]
    table = build_table(
        preset_record(preset),
        done,
        preset.arms,
        {s: results[s].evals for s in done},
        {s: results[s].pairs for s in done},
        {s: results[s].bootstraps for s in done},
    )
    table["failed_seeds"] = {str(s): why for s, why in failed.items()}
    json_path, md_path = write_table(root, table)
    say(f"table: {md_path} and {json_path}")
    return ReproduceResult(table, failed)
