"""`openblip reproduce` usage errors (exit code 2, a message naming the bad item, nothing run) and
its help; the run itself is tested in tests/reproduce/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openblip.cli import main
from openblip.cli.reproduce_cmd import parse_seeds


def test_help_names_the_steps_arms_and_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for words in ("--preset {quick,full}", "--seeds", "captioner + filter", "table.json", "resumes"):
        assert words in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x"], "the following arguments are required: --preset"),
        (["--preset", "quick"], "the following arguments are required: --out"),
        (["--preset", "medium", "--out", "x"], "invalid choice: 'medium'"),
    ],
)
def test_argument_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["reproduce", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ("0,x", "'x' is not a seed"),
        ("1,-2", "'-2' is not a seed"),
        ("0,,1", "'' is not a seed"),
        ("3,3", "repeats a seed"),
    ],
)
def test_bad_seeds_exit_2_naming_the_item(
    seeds: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["reproduce", "--preset", "quick", "--out", str(out), "--seeds", seeds]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_bad_device_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--preset", "quick", "--out", str(tmp_path / "o"), "--device", "tpu"]) == 2
    assert "tpu" in capsys.readouterr().err


def test_an_out_dir_of_another_preset_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "reproduce.json").write_text(json.dumps({"name": "full", "web_noise": 0.6}))
    assert main(["reproduce", "--preset", "quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "'full'" in err


def test_parse_seeds() -> None:
    assert parse_seeds("0,1, 2") == [0, 1, 2]
