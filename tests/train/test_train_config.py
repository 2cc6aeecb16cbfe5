"""TrainConfig loading: TOML/JSON files, --set overrides, type checks, errors naming the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from openblip.train.config import (
    ConfigError,
    Decay,
    ObjectiveKind,
    Precision,
    TrainConfig,
    load_config,
    parse_override,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_papers_pretraining() -> None:
    cfg = load_config()
    assert cfg == TrainConfig()
    assert cfg.optim.lr == 3e-4 and cfg.optim.weight_decay == 0.05
    assert cfg.schedule.decay is Decay.STEP and cfg.schedule.decay_rate == 0.9
    assert cfg.objective.queue_size == 57600 and cfg.objective.momentum == 0.995


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[optim]\nlr = 1e-4\nbetas = [0.9, 0.98]\n[objective]\nkind = "caption"\n[model.vision]\nwidth = 32\n')
    cfg = load_config(p, ["optim.lr=2e-5", "run.precision=bf16", "data.hflip=false", "run.out_dir=runs/x y"])
    assert cfg.optim.lr == 2e-5
    assert cfg.optim.betas == (0.9, 0.98)
    assert cfg.objective.kind is ObjectiveKind.CAPTION
    assert cfg.model.vision.width == 32
    assert cfg.run.precision is Precision.BF16
    assert cfg.data.hflip is False
    assert cfg.run.out_dir == "runs/x y"


def test_json_file(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"schedule": {"epochs": 3, "decay": "cosine"}}))
    cfg = load_config(p)
    assert cfg.schedule.epochs == 3 and cfg.schedule.decay is Decay.COSINE


def test_ints_are_accepted_for_floats_but_not_the_reverse() -> None:
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(ConfigError, match=r"'schedule\.epochs' must be an integer"):
        load_config(None, ["schedule.epochs=2.5"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("nosuch.lr=1", "unknown config key 'nosuch'"),
        ("run.precision=fp8", "'run.precision' must be one of"),
        ("data.hflip=1", "'data.hflip' must be true or false"),
        ("optim.betas=[0.9]", "'optim.betas' must have 2 items"),
        ("optim.lr=fast", "'optim.lr' must be a number"),
        ("optim.lr.x=1", "'optim.lr' must be a number"),
        ("novalue", "not of the form key=value"),
        ("model=3", "model must be a table"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)
    yaml = tmp_path / "c.yaml"
    yaml.write_text("a: 1")
    with pytest.raises(ConfigError, match=r"must be a \.toml or \.json"):
        load_config(yaml)
    unknown = tmp_path / "u.toml"
    unknown.write_text("[schedule]\nwarmup = 5\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'schedule\.warmup'"):
        load_config(unknown)


def test_override_values_parse_as_toml() -> None:
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=true") == ("a", True)
    assert parse_override('a="x"') == ("a", "x")
    assert parse_override("a=runs/out") == ("a", "runs/out")
    assert parse_override("a=[1, 2]") == ("a", [1, 2])


def test_to_dict_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["objective.kind=vqa", "optim.betas=[0.8, 0.9]"])
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg.to_dict()))
    assert load_config(p) == cfg


@pytest.mark.parametrize(
    "name",
    ["pretrain_synth_ci", "pretrain_base", "caption_finetune", "retrieval_finetune", "vqa_finetune"],
)
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / f"{name}.toml")
    assert isinstance(cfg, TrainConfig)
