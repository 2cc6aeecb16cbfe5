from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openblip.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "openblip", "data", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_synth_in_a_subprocess_writes_benchmark_and_prints_one_json_line(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    r = _run("synth", "--out", str(out), "--num-images", "30", "--image-size", "48", "--web-noise", "0.5",
             "--seed", "4", "--samples-per-shard", "5")  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["images"] == {"train": 14, "web": 13, "test": 3}
    assert summary["shards"] == {"train": 3, "web": 3, "test": 1}
    assert sum(summary["web_noise"].values()) == 13 and summary["web_noise"]["clean"] == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 4 and manifest["config"]["image_size"] == 48
    assert len(list((out / "web").glob("*.tar"))) == 3


def test_bad_arguments_in_a_subprocess_exit_2(tmp_path: Path) -> None:
    r = _run("synth", "--out", str(tmp_path / "o"), "--web-noise", "1.5")
    assert r.returncode == 2 and r.stdout == "" and "--web-noise" in r.stderr
    assert not (tmp_path / "o").exists()


def test_existing_output_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "b")
    assert main(["data", "synth", "--out", out, "--num-images", "3", "--image-size", "32"]) == 0
    capsys.readouterr()
    assert main(["data", "synth", "--out", out, "--num-images", "3"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["synth"],  # no --out
        ["synth", "--out", "X", "--size", "huge"],
        ["synth", "--out", "X", "--num-images", "0"],
        ["synth", "--out", "X", "--size", "ci", "--num-images", "10"],
        ["synth", "--out", "X", "--image-size", "16"],
        ["synth", "--out", "X", "--samples-per-shard", "0"],
        ["synth", "--out", "X", "--seed", "-1"],
        ["synth", "--out", "X", "--num-images", "ten"],
        [],  # no action
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    argv = ["data", *(str(tmp_path / "o") if a == "X" else a for a in args)]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "error" in captured.err
    assert not (tmp_path / "o").exists()
