"""`openblip demo` end to end with the shipped models (it drives `openblip bootstrap`, so this
module runs once that command is installed), and its usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openblip.cli import main


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openblip", "demo", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )


def test_demo_bootstraps_a_fresh_web_split_and_says_what_it_caught(tmp_path: Path) -> None:
    pytest.importorskip("openblip.bootstrap")
    out = tmp_path / "demo"
    first = _demo("--out", str(out), "--images", "20", "--device", "cpu")
    assert first.returncode == 0, first.stderr
    stats = json.loads((out / "bootstrap" / "stats.json").read_text())
    assert stats["samples"] == 20 and stats["noise"]["noisy"] == 8
    assert (out / "bootstrap" / "report.html").is_file()
    text = first.stdout
    assert "CapFilt on 20 web images" in text
    assert f"precision {100 * stats['noise']['precision']:.0f}%" in text
    assert "Examples, before and after:" in text and text.count("  [0000000") == 5
    assert str(out / "bootstrap" / "report.html") in text
    assert "writing 20 web images" in first.stderr  # progress on stderr
    again = _demo("--out", str(out), "--images", "20", "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert "reusing the web split" in again.stderr
    assert json.loads((out / "bootstrap" / "stats.json").read_text())["web"] == stats["web"]
    assert again.stdout == first.stdout


def test_another_size_into_the_same_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark

    write_benchmark(tmp_path / "demo" / "data", SynthConfig(size=SynthSize(0, 12, 0), seed=2024))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--images", "20"]) == 2
    assert "holds a web split of 12 images" in capsys.readouterr().err


def test_too_few_images_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--images", "3"]) == 2
    assert "--images must be >= 10" in capsys.readouterr().err
