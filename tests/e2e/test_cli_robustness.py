"""Adversarial inputs through the CLI: odd image kinds and paths, empty texts, outputs that
cannot be written, devices and lengths the model cannot honour, checkpoints without the
needed head, a reader that leaves early. Subprocess runs where the process itself matters
(stdin, file names, pipes); the rest in-process through `openblip.cli.main`."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from openblip.checkpoint_io import save_pretrained
from openblip.cli import main
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

# The undecodable name (not valid UTF-8) as Python spells it: lone surrogates.
UNDECODABLE = os.fsdecode(b"latin1_caf\xe9.png")


def _rgb(seed: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


def _encoded(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def odd_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    """Image kinds and paths, each with the error it must give (None: it must be captioned)."""
    root = tmp_path_factory.mktemp("odd images")  # a space in every path
    im = _rgb(0)
    gray16 = Image.fromarray(np.random.default_rng(1).integers(0, 65535, (20, 20)).astype(np.uint16))
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green")]
    rotated = Image.Exif()
    rotated[0x0112] = 6
    palette = im.convert("P")
    files: dict[str, bytes] = {
        "cmyk.jpg": _encoded(im.convert("CMYK"), "JPEG"),
        "progressive.jpg": _encoded(im, "JPEG", progressive=True),
        "exif6.jpg": _encoded(im, "JPEG", exif=rotated),
        "gray16.png": _encoded(gray16, "PNG"),
        "float.tiff": _encoded(Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)), "TIFF"),
        "palette_alpha.png": _encoded(palette, "PNG", transparency=0),
        "la.png": _encoded(im.convert("LA"), "PNG"),
        "one_bit.png": _encoded(im.convert("1"), "PNG"),
        "animated.gif": _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "animated.webp": _encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "pages.tiff": _encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "pixel.png": _encoded(Image.new("RGB", (1, 1), "blue"), "PNG"),
        "column.png": _encoded(Image.new("RGB", (1, 60), "blue"), "PNG"),
        "panorama.png": _encoded(Image.new("RGB", (3000, 4), "blue"), "PNG"),
        "png_named.jpg": _encoded(im, "PNG"),
        "UPPER.JPEG": _encoded(im, "JPEG"),
        "space ü 猫.PNG": _encoded(im, "PNG"),
        UNDECODABLE: _encoded(im, "PNG"),
        "svg.jpg": b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>',
        "pdf.jpg": b"%PDF-1.4\n%%EOF\n",
        "zero.jpg": b"",
        "truncated.png": _encoded(im, "PNG")[:300],
    }
    expected: dict[str, str | None] = {name: None for name in files}
    expected.update({"svg.jpg": "not an image", "pdf.jpg": "not an image", "zero.jpg": "empty file"})
    expected["truncated.png"] = "truncated"
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "deeper" / "n.png").write_bytes(files["la.png"])
    expected[os.path.join("nested", "deeper", "n.png")] = None
    os.symlink(root / "pixel.png", root / "link.png")
    os.symlink(root / "nowhere.png", root / "broken_link.png")
    expected.update({"link.png": None, "broken_link.png": "no such file"})
    return root, expected


def test_odd_image_kinds_and_paths(cli, models, odd_dir, tmp_path) -> None:
    root, expected = odd_dir
    piped = tmp_path / "piped.jpg"
    piped.write_bytes(_encoded(_rgb(5), "JPEG"))
    # the directory twice (differently spelled), a file inside it again, and an image on stdin
    r = cli(
        "caption",
        str(root),
        "-",
        str(root) + "/",
        os.path.join(str(root), ".", "pixel.png"),
        "--model",
        models["full"],
        "--max-length",
        "6",
        "--batch-size",
        "5",
        stdin=piped,
    )
    assert r.code == 1 and "Traceback" not in r.stderr, r.stderr
    got = {rec["image"]: rec for rec in r.records}
    assert len(r.records) == len(got) == len(expected) + 1  # each path once
    assert set(got.pop("-")) == {"image", "caption"}
    names = sorted(expected, key=lambda n: os.path.join(str(root), n))
    assert list(got) == [os.path.join(str(root), n) for n in names]  # sorted walk order
    for name, reason in expected.items():
        rec = got[os.path.join(str(root), name)]
        if reason is None:
            assert set(rec) == {"image", "caption"}, rec
        else:
            assert set(rec) == {"image", "error"} and reason in rec["error"] and name in rec["error"], rec
    assert os.fsencode(got[os.path.join(str(root), UNDECODABLE)]["image"]).endswith(b"latin1_caf\xe9.png")


def test_empty_texts_and_indexes(models, images, tmp_path, capsys) -> None:
    missing = str(tmp_path / "missing.png")
    args = ["match", images[0], missing, "--text", "", "--text", "a dog", "--text", "!!!", "--model", models["full"]]
    assert main(args) == 1
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["image"], r["text"]) for r in recs] == [
        (i, t) for i in (images[0], missing) for t in ("", "a dog", "!!!")
    ]
    assert "itm_score" in recs[1] and 0 < recs[1]["itm_score"] < 1
    assert recs[0]["error"] == "text 0 is empty ('' after cleaning)"
    assert recs[2]["error"] == "text 2 is empty ('!!!' after cleaning)"
    assert all("no such file" in r["error"] for r in recs[3:])

    texts = tmp_path / "texts.txt"
    texts.write_text("a red square\n!!!\n")
    assert main(["index", "--texts", str(texts), "--index", str(tmp_path / "tidx"), "--model", models["full"]]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out == [
        {"text": "a red square", "row": 0},
        {"text": "!!!", "error": "text 1 is empty ('!!!' after cleaning)"},
    ]

    idx = str(tmp_path / "idx")
    assert main(["index", *images, "-", "--index", idx, "--model", models["full"]]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r.get("row") for r in out] == [0, 1, 2, None] and "cannot be indexed" in out[3]["error"]
    assert main(["search", "--index", idx, "--text", "  ", "--text", "a dog", "--k", "2"]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0] == {"text": "  ", "error": "text 0 is empty ('  ' after cleaning)"}
    assert [(r["text"], r["rank"]) for r in out[1:]] == [("a dog", 1), ("a dog", 2)]
    assert main(["search", "--index", idx, "--text", "a dog", "--nlist", "4"]) == 2
    assert "--nlist 4: more lists than the 3 indexed rows" in capsys.readouterr().err

    empty = str(tmp_path / "empty_idx")  # every image failed: an index without rows
    assert main(["index", missing, "--index", empty, "--model", models["full"]]) == 1
    capsys.readouterr()
    assert main(["search", "--index", empty, "--text", "a dog"]) == 2
    assert "the index is empty" in capsys.readouterr().err


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip], models) -> dict:
    root = tmp_path_factory.mktemp("odd_models")
    retrieval = save_pretrained(tiny_blip("retrieval", 3), Tokenizer.default(), root / "retrieval")
    corrupt = root / "corrupt"
    shutil.copytree(models["full"], corrupt)
    (corrupt / "model.safetensors").write_bytes((corrupt / "model.safetensors").read_bytes()[:200])
    (root / "empty").mkdir()
    return {"retrieval": str(retrieval), "corrupt": str(corrupt), "empty": str(root / "empty")}


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # --output is refused before the (missing) model is looked at
        (["caption", "x.png", "--model", "/no/model", "--output", "/no/such/dir/out.jsonl"], "no such directory"),
        (["caption", "x.png", "--model", "/no/model", "--output", "{tmp}/out.csv/"], "is a directory"),
        (["caption", "x.png", "--model", "/no/model", "--max-length", "8", "--min-length", "9"], "--min-length 9"),
        (["vqa", "x.png", "--question", "q", "--model", "/no/model", "--min-length", "11"], "--min-length 11"),
        (["caption", "x.png", "--model", "/no/model", "--num-beams", "0"], "num_beams must be >= 1, got 0"),
        pytest.param(["caption", "x.png", "--model", "{full}", "--device", "cuda"], "--device cuda", marks=NO_CUDA),
        (["caption", "x.png", "--model", "{full}", "--device", "meta"], "unsupported device 'meta'"),
        (["vqa", "x.png", "--question", "q", "--model", "{vqa}", "--max-length", "1"], "--max-length: max_length 1"),
        (["vqa", "x.png", "--question", "q", "--model", "{vqa}", "--max-length", "65"], "exceeds the model's 64"),
        (["caption", "x.png", "--model", "{retrieval}"], "model {retrieval}: captioning needs a text decoder"),
        (["vqa", "x.png", "--question", "q", "--model", "{retrieval}"], "model {retrieval}: visual question"),
        (["caption", "x.png", "--model", "{corrupt}"], "cannot load model {corrupt}: "),
        (["classify", "x.png", "--labels", "a", "--model", "{empty}"], "cannot load model {empty}: "),
    ],
)
def test_usage_errors_name_what_is_wrong(
    args: list[str], message: str, models, odd_models, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = {**models, **odd_models, "tmp": str(tmp_path)}
    assert main([a.format(**names) for a in args]) == 2
    captured = capsys.readouterr()
    assert message.format(**names) in captured.err and captured.out == ""


def test_more_captions_than_beams_and_a_short_max_length(models, images, capsys) -> None:
    args = ["caption", *images[:2], "--model", models["full"], "--batch-size", "1", "--max-length", "7"]
    assert main([*args, "--num-beams", "2", "--num-captions", "4", "--dtype", "bf16"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(set(r["captions"])) for r in recs] == [4, 4]
    assert main([*args, "--max-length", "3", "--prompt", ""]) == 0  # min-length 5 by default: capped, no error
    assert all(r["caption"] for r in map(json.loads, capsys.readouterr().out.splitlines()))


def test_a_reader_that_leaves_early_ends_the_run_quietly(models, images, tmp_path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"text number {i}\n" for i in range(1500)))  # ~150 kB: more than a pipe holds
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "openblip", "match", images[0], "--texts-file", str(texts), "--model", models["full"]]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["text"] == "text number 0"
        proc.stdout.close()  # as `| head -1` does
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
