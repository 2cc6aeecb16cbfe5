"""`openblip train` and `openblip eval` end to end on a tiny synthetic split (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openblip.cli import main
from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_scenes")
    write_benchmark(out, SynthConfig(size=SynthSize(train=8, web=0, test=4), image_size=32, seed=1))
    return out


@pytest.fixture
def config(tiny_train_config: Path) -> Path:
    return tiny_train_config  # tests/conftest.py


def _train(
    config: Path, tmp_path: Path, scenes: Path, layout: str, kind: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> Path:
    run = tmp_path / f"run_{kind}"
    sets = ["--set", f"data.train={scenes / 'train'}", "--set", f"run.out_dir={run}", *extra]
    sets += ["--set", f"model.layout={layout}", "--set", f"objective.kind={kind}"]
    code = main(["train", str(config), *sets])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and Path(summary["model"]).is_dir()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    return Path(summary["model"])


def test_pretrain_then_eval_retrieval_and_caption(
    config: Path, tmp_path: Path, scenes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _train(config, tmp_path, scenes, "pretrain", "pretrain", capsys)
    test = str(scenes / "test")
    assert main(["eval", "--model", str(model), "--data", test, "--task", "retrieval", "--k-test", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = out["metrics"]
    assert out["items"] == 4 and m["images"] == 4 and m["texts"] == 20
    assert 0.0 <= m["txt_r1"] <= m["txt_r5"] <= 100.0 and m["img_r10"] == 100.0
    code = main(["eval", "--model", str(model), "--data", test, "--task", "caption", "--beams", "1", "--captions"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["captions"]) == {"000000000", "000000001", "000000002", "000000003"}
    assert {"BLEU-4", "CIDEr", "attribute_f1", "shuffled_f1"} <= set(out["metrics"])


def test_vqa_train_and_eval(config: Path, tmp_path: Path, scenes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _train(config, tmp_path, scenes, "vqa", "vqa", capsys)
    assert main(["eval", "--model", str(model), "--data", str(scenes / "test"), "--task", "vqa"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert m["questions"] > 4 and 0.0 <= m["exact_match"] <= 100.0


def test_caption_finetune_runs_with_cpu_bf16_autocast(
    config: Path, tmp_path: Path, scenes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bf16 = ["--set", "run.precision=bf16", "--set", "run.cpu_autocast=true"]
    _train(config, tmp_path, scenes, "caption", "caption", capsys, *bf16)


def test_usage_errors_exit_2(config: Path, tmp_path: Path, scenes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(config), "--set", "optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    data = f"data.train={scenes / 'train'}"
    assert main(["train", str(config), "--set", "objective.queue_size=0", "--set", data]) == 2
    assert "queue_size must be >= 1, got 0" in capsys.readouterr().err
    short = ["--set", data, "--set", "data.samples_per_epoch=40", "--set", f"run.out_dir={tmp_path / 'r'}"]
    assert main(["train", str(config), *short]) == 2
    assert "ran out of samples in epoch 0" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "none"), "--data", str(scenes / "test"), "--task", "vqa"]) == 2
