"""A batch job records the failure, goes on, and loses nothing already done: the model failing
on one batch (out of memory, a kernel error), a named pipe in a directory, and a run killed
mid-way (its .parquet records survive in the sidecar)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import openblip.tasks.caption
import openblip.tasks.match
from openblip.cli import main


@pytest.fixture
def with_black(images, tmp_path) -> list[str]:
    """The e2e images with a black one (a constant image: easy to spot in the pixels) second."""
    black = tmp_path / "black.png"
    Image.new("RGB", (32, 32)).save(black)
    return [images[0], str(black), *images[1:]]


def _has_black(pixels: torch.Tensor) -> bool:
    if not len(pixels):  # the settings check runs the model on no image first
        return False
    return bool((pixels.flatten(2).std(-1) == 0).all(-1).any())


def _records(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _caption(models, names: list[str], batch_size: int) -> list[str]:
    return ["caption", *names, "--model", models["full"], "--batch-size", str(batch_size), "--max-length", "8"]


def test_the_model_failing_on_one_item_fails_that_item_only(models, with_black, capsys, monkeypatch) -> None:
    assert main(_caption(models, with_black, 1)) == 0
    expected = _records(capsys)
    real = openblip.tasks.caption.caption_images

    def caption_images(model, tokenizer, pixels, *rest, **options):
        if _has_black(pixels):
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")
        return real(model, tokenizer, pixels, *rest, **options)

    monkeypatch.setattr(openblip.tasks.caption, "caption_images", caption_images)
    assert main(_caption(models, with_black, 3)) == 1
    got = _records(capsys)
    bad = with_black[1]
    assert got[1] == {
        "image": bad,
        "error": f"{bad}: model failed on this item: CUDA error: an illegal memory access was encountered",
    }
    assert got[:1] + got[2:] == expected[:1] + expected[2:]  # the others as in an undisturbed run
    assert all("caption" in r for r in got[:1] + got[2:])


def test_out_of_memory_on_a_batch_is_retried_item_by_item(models, with_black, capsys, monkeypatch, caplog) -> None:
    assert main(_caption(models, with_black, 1)) == 0
    expected = _records(capsys)
    real = openblip.tasks.caption.caption_images
    sizes: list[int] = []

    def caption_images(model, tokenizer, pixels, *rest, **options):
        sizes.append(pixels.shape[0])
        if pixels.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real(model, tokenizer, pixels, *rest, **options)

    monkeypatch.setattr(openblip.tasks.caption, "caption_images", caption_images)
    assert main(_caption(models, with_black, 4)) == 0
    assert _records(capsys) == expected
    assert sizes == [0, 4, 1, 1, 1, 1]  # 0: the settings check before any image (caption_cmd)
    assert sum("retrying its items one at a time" in r.message for r in caplog.records) == 1


def test_match_goes_on_past_a_model_failure(models, with_black, capsys, monkeypatch) -> None:
    real = openblip.tasks.match.match_images_texts

    def match_images_texts(model, tokenizer, pixels, texts):
        if _has_black(pixels):
            raise RuntimeError("boom")
        return real(model, tokenizer, pixels, texts)

    monkeypatch.setattr(openblip.tasks.match, "match_images_texts", match_images_texts)
    args = ["match", *with_black, "--text", "a dog", "--text", "a cat", "--model", models["full"]]
    assert main(args) == 1
    got = _records(capsys)
    assert [r["image"] for r in got] == [n for n in with_black for _ in range(2)]
    assert [("error" in r) for r in got] == [False, False, True, True, False, False, False, False]
    assert got[2]["error"] == f"{with_black[1]}: model failed on this item: boom"
    assert all(0.0 <= r["itm_score"] <= 1.0 for r in got if "error" not in r)


def test_a_named_pipe_in_a_directory_gets_an_error_record(cli, models, images, tmp_path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    Path(d / "a.png").write_bytes(Path(images[0]).read_bytes())
    os.mkfifo(d / "b.png")  # an image name, but opening it would wait for a writer forever
    r = cli("caption", str(d), "--model", models["full"], "--max-length", "8")
    assert r.code == 1, r.stderr
    assert [x["image"] for x in r.records] == [str(d / "a.png"), str(d / "b.png")]
    assert "caption" in r.records[0]
    assert r.records[1]["error"] == f"{d / 'b.png'}: not a regular file (named pipe); not opened"


def test_a_killed_run_leaves_its_finished_records_in_the_sidecar(models, images, tmp_path) -> None:
    """The run is made to block after five images, reading an image from a standard input that
    never ends, so the kill lands mid-run whatever the machine's speed."""
    d = tmp_path / "imgs"
    d.mkdir()
    names = []
    for i in range(5):
        arr = np.random.default_rng(i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"{i}.png")
        names.append(str(d / f"{i}.png"))
    out = tmp_path / "x.parquet"
    sidecar = Path(f"{out}.partial.jsonl")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [*names, "-", "--model", models["full"], "--batch-size", "1", "--max-length", "8"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "openblip", "caption", *args, "--output", str(out)],
        env=env,
        stdin=subprocess.PIPE,  # never written to nor closed: reading "-" waits
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sidecar.exists() and sidecar.read_text(encoding="utf-8").count("\n") >= len(names):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stderr):
            if stream is not None:
                stream.close()
    assert not out.exists()
    records = [json.loads(line) for line in sidecar.read_text(encoding="utf-8").splitlines()]
    assert [r["image"] for r in records] == names
    assert all(isinstance(r["caption"], str) and set(r) == {"image", "caption"} for r in records)
