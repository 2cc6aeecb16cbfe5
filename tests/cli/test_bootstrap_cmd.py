"""`openblip bootstrap` end to end in a subprocess: bad samples and an unreadable shard mixed in,
exit codes, the summary line, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openblip.bootstrap.inputs import error_reason
from openblip.checkpoint_io import save_pretrained
from openblip.cli import main
from openblip.tokenizer import Tokenizer

from ..bootstrap.conftest import BAD, MAX_PIXELS, build_mixed_dir


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("OPENBLIP_MAX_PIXELS", None)
    return subprocess.run(
        [sys.executable, "-m", "openblip", "bootstrap", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mixed_dir(tmp_path_factory.mktemp("mixed"))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, tiny_blip) -> str:  # type: ignore[no-untyped-def]
    return str(save_pretrained(tiny_blip("full", 0), Tokenizer.default(), tmp_path_factory.mktemp("m") / "full"))


def test_bad_samples_and_shards_are_recorded(mixed_dir: Path, full: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(mixed_dir), "--out", str(out), "--captioner", full, "--filter", full, "--device", "cpu"]
    args += ["--max-pixels", str(MAX_PIXELS), "--workers", "1", "--batch-size", "2"]
    proc = _cli(*args)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["samples"] == 14 and summary["errors"] == len(BAD) and summary["shards_failed"] == 1
    rows = {r["key"]: r for r in pq.read_table(out / "scores" / "a.parquet").to_pylist()}
    assert list(rows) == [f"k{i:02d}" for i in range(11)]  # every sample has its row, in order
    assert {k: error_reason(r["error"]) for k, r in rows.items() if r["error"]} == BAD
    for key in ("k00", "k01", "k10"):
        assert (
            rows[key]["error"] is None and rows[key]["web_itm"] is not None and len(rows[key]["synthetic_texts"]) == 1
        )
    assert all(rows[k]["web_itm"] is None and rows[k]["web_kept"] is None for k in BAD)
    assert len(pq.read_table(out / "scores" / "b.parquet")) == 3
    assert not (out / "scores" / "c.parquet").exists()  # unreadable: no outputs, retried by a rerun
    stats = json.loads((out / "stats.json").read_text())
    assert stats["errors"]["by_reason"] == {reason: 1 for reason in BAD.values()}
    assert [f["shard"] for f in stats["shards"]["failed"]] == ["c"]
    assert "unreadable tar" in stats["shards"]["failed"][0]["error"]
    # a rerun redoes only the unreadable shard, and ends the same
    again = _cli(*args)
    assert again.returncode == 1 and json.loads(again.stdout.strip().splitlines()[-1])["samples"] == 14
    # the kept shards are training data: webdataset tars holding only good samples
    from openblip.data.webdataset import iter_shards

    kept = list(iter_shards(out / "shards"))
    assert {s.meta["key"] for s in kept} <= {"k00", "k01", "k10", "m0", "m1", "m2"}


def test_usage_errors(
    full: str,
    mixed_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--out", str(tmp_path / "o"), "--captioner", full, "--filter", full, "--device", "cpu"]
    for args, message in [
        ([str(tmp_path / "missing.tar"), *base], "missing.tar"),
        ([str(mixed_dir), *base, "--threshold", "2"], "threshold"),
        ([str(mixed_dir), *base, "--num-captions", "0"], "--num-captions"),
        ([str(mixed_dir), *base, "--ray-address", "auto"], "--engine ray"),
        ([str(mixed_dir), "--out", str(tmp_path / "p"), "--captioner", "none", "--filter", str(tmp_path)], "--filter"),
        ([str(mixed_dir), *base, "--filter", str(tmp_path / "nope")], "cannot load model"),
    ]:
        assert main(["bootstrap", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()  # refused before writing anything
    with pytest.raises(SystemExit) as e:
        main(["bootstrap", str(mixed_dir), *base, "--num-beams", "2", "--sample"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_progress_bar_on_a_terminal_and_lines_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal a bar with samples/s and the kept ratio; otherwise no bar, a line now and then."""
    import io

    from openblip.cli.bootstrap_cmd import _Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, every, want in (
        (Terminal(), 30.0, ["bootstrap: 10sample", "sample/s", "kept=30.0%"]),
        (io.StringIO(), 30.0, []),  # a log file: nothing within the first 30 s
        (io.StringIO(), 0.0, ["bootstrap: 10 samples", "samples/s", "kept 30.0% of texts"]),
    ):
        monkeypatch.setattr(sys, "stderr", stream)
        progress = _Progress(every=every)
        progress.update(samples=10, web_kept=4, texts_kept=6, texts=20)
        progress.close()
        got = stream.getvalue()
        assert all(w in got for w in want) and (want or got == ""), got
