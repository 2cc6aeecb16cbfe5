"""The training configs every arm gets: the same steps, batch and schedule (the same compute),
from scratch for the arms and from step 1's model for the fine-tuning."""

from __future__ import annotations

from pathlib import Path

from openblip.reproduce.stages import train_config
from openblip.train.config import ObjectiveKind

from .conftest import TINY


def test_every_arm_trains_with_the_same_budget_from_scratch(tmp_path: Path) -> None:
    a = train_config(TINY, TINY.pretrain, tmp_path / "a" / "data", tmp_path / "a" / "run", 3, None)
    b = train_config(TINY, TINY.pretrain, tmp_path / "b" / "data", tmp_path / "b" / "run", 3, None)
    assert a.schedule == b.schedule and a.optim == b.optim and a.objective == b.objective and a.model == b.model
    assert a.schedule.max_steps == TINY.pretrain.steps and a.data.batch_size == TINY.pretrain.batch_size
    assert a.schedule.epochs > TINY.pretrain.steps  # max_steps, not the data's size, ends the run
    assert a.model.init_from == "" and a.run.seed == 3 and a.objective.kind is ObjectiveKind.PRETRAIN
    assert a.data.train == str(tmp_path / "a" / "data") and a.run.out_dir == str(tmp_path / "a" / "run")
    assert not a.data.hflip and not a.data.augment  # captions say left/right and name every object


def test_fine_tuning_starts_from_the_pretrained_model(tmp_path: Path) -> None:
    cfg = train_config(TINY, TINY.finetune, tmp_path / "clean", tmp_path / "ft", 0, tmp_path / "run" / "model")
    assert cfg.model.init_from == str(tmp_path / "run" / "model")
    assert cfg.schedule.max_steps == TINY.finetune.steps
    assert cfg.objective.kind is ObjectiveKind.PRETRAIN  # ITC + ITM + LM: captioner and filter in one model
