"""The helpers the inference commands share: parser building without heavy imports, run-argument
checks, --max-pixels resolution, and batched image loading with per-item errors."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from openblip.cli import UsageError
from openblip.cli.common import (
    MAX_PIXELS_ENV,
    add_command,
    add_model_arguments,
    add_run_arguments,
    check_run_arguments,
    images_of,
    item_batches,
    load_items,
    max_pixels,
    min_length_of,
    require,
    text_error,
)
from openblip.limits import DEFAULT_MAX_PIXELS
from openblip.model.blip import Blip

_REGISTER = """
import argparse, importlib, json, sys
sub = argparse.ArgumentParser().add_subparsers()
for name in sys.argv[2:]:
    importlib.import_module(name).register(sub)
print(json.dumps(sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)))
"""


def _loaded_after_register(modules: list[str], heavy: list[str]) -> list[str]:
    """Which of `heavy` a fresh interpreter holds after registering `modules`' parsers."""
    proc = subprocess.run(
        [sys.executable, "-c", _REGISTER, json.dumps(heavy), *modules],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def test_inference_and_convert_parsers_import_nothing_heavy() -> None:
    modules = [f"openblip.cli.{n}_cmd" for n in ("caption", "vqa", "match", "index", "search", "classify", "convert")]
    heavy = ["torch", "transformers", "PIL", "tqdm", "safetensors", "openblip.api", "openblip.model", "openblip.image"]
    assert _loaded_after_register(modules, heavy) == []


def test_data_train_and_eval_parsers_do_not_import_torch() -> None:
    modules = ["openblip.cli.data_cmd", "openblip.cli.train_cmd", "openblip.cli.eval_cmd"]
    assert _loaded_after_register(modules, ["torch", "transformers", "openblip.train.loop"]) == []


def _parser() -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser(prog="openblip").add_subparsers()
    p = add_command(sub, "demo", "a demo command", "`openblip demo`: first line.\n\n  indented second paragraph\n")
    add_model_arguments(p, required=False)
    add_run_arguments(p, batch_size=7)
    return p


def test_add_command_keeps_the_docstring_layout_and_the_shared_groups() -> None:
    p = _parser()
    text = p.format_help()
    assert "`openblip demo`: first line.\n\n  indented second paragraph\n" in text
    assert "model:" in text and "run:" in text and text.index("model:") < text.index("run:")
    args = p.parse_args([])
    assert (args.batch_size, args.device, args.dtype, args.output, args.max_pixels) == (7, "auto", "fp32", None, None)
    assert f"${MAX_PIXELS_ENV} or {DEFAULT_MAX_PIXELS}" in " ".join(text.split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output", "out.xlsx", "--batch-size", "0"], "unknown extension"),  # --output is checked first
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ],
)
def test_check_run_arguments_refuses(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_run_arguments(_parser().parse_args(argv))


def test_check_run_arguments_accepts_known_outputs() -> None:
    for out in ("r.jsonl", "r.parquet", "r.CSV"):
        check_run_arguments(_parser().parse_args(["--output", out, "--batch-size", "1"]))


def test_max_pixels_flag_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _parser()
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_pixels(p.parse_args([])) == DEFAULT_MAX_PIXELS
    monkeypatch.setenv(MAX_PIXELS_ENV, "1234")
    assert max_pixels(p.parse_args([])) == 1234
    assert max_pixels(p.parse_args(["--max-pixels", "99"])) == 99
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(UsageError, match="OPENBLIP_MAX_PIXELS='lots' is not an integer"):
        max_pixels(p.parse_args([]))
    with pytest.raises(UsageError, match="--max-pixels must be >= 1, got 0"):
        max_pixels(p.parse_args(["--max-pixels", "0"]))


def _png(path: Path, size: tuple[int, int]) -> str:
    Image.new("RGB", size, (200, 30, 60)).save(path)
    return str(path)


def test_item_batches_load_in_order_with_an_error_per_bad_item(
    tmp_path: Path, tiny_blip: Callable[[str, int], Blip]
) -> None:
    from openblip.api import BlipPipeline
    from openblip.checkpoint_io import LoadedModel, SourceFormat, SourceInfo
    from openblip.tokenizer import Tokenizer

    model = tiny_blip("caption", 0)
    source = SourceInfo(SourceFormat.OPENBLIP, "tiny", tmp_path, ())
    pipe = BlipPipeline(LoadedModel(model, Tokenizer.default(), model.cfg, source), max_pixels=40 * 40)
    (tmp_path / "notes.txt").write_text("not an image\n")
    names = [
        _png(tmp_path / "a.png", (40, 30)),
        str(tmp_path / "missing.png"),
        _png(tmp_path / "big.png", (41, 40)),  # over max_pixels
        str(tmp_path / "notes.txt"),
        _png(tmp_path / "b.png", (20, 20)),
    ]
    got = list(item_batches(pipe, names, 2, "test"))
    assert [[it.name for it in batch] for batch in got] == [names[0:2], names[2:4], names[4:5]]
    items = [it for batch in got for it in batch]
    assert [it.error is None for it in items] == [True, False, False, False, True]
    for it in items[1:4]:
        assert it.error is not None and it.name in it.error and it.image is None
    assert "1640" in str(items[2].error)  # the pixel count that was refused
    assert [im.size for im in images_of(items)] == [(40, 30), (20, 20)]
    assert all(im.mode == "RGB" for im in images_of(items))


def _pipeline(tmp_path: Path, model: Blip, max_pixels: int = 40 * 40):
    from openblip.api import BlipPipeline
    from openblip.checkpoint_io import LoadedModel, SourceFormat, SourceInfo
    from openblip.tokenizer import Tokenizer

    source = SourceInfo(SourceFormat.OPENBLIP, "models/tiny-caption", tmp_path, ())
    return BlipPipeline(LoadedModel(model, Tokenizer.default(), model.cfg, source), max_pixels=max_pixels)


class _Stdin:
    def __init__(self, data: bytes, tty: bool = False) -> None:
        self.buffer = io.BytesIO(data)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_dash_reads_one_image_from_stdin(
    tmp_path: Path, tiny_blip: Callable[[str, int], Blip], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = _pipeline(tmp_path, tiny_blip("caption", 0))
    encoded = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 200, 30)).save(encoded, format="PNG")
    monkeypatch.setattr(sys, "stdin", _Stdin(encoded.getvalue()))
    (item,) = load_items(pipe, ["-"])
    assert item.error is None and item.image is not None and item.image.size == (30, 20)
    assert item.image.getpixel((0, 0)) == (10, 200, 30)
    monkeypatch.setattr(sys, "stdin", _Stdin(b"not an image"))
    assert load_items(pipe, ["-"])[0].error == "-: not an image (unrecognised format or corrupt header)"
    monkeypatch.setattr(sys, "stdin", _Stdin(b"", tty=True))
    assert load_items(pipe, ["-"])[0].error == "-: standard input is a terminal, not image data"


def test_require_names_the_model(tmp_path: Path, tiny_blip: Callable[[str, int], Blip]) -> None:
    from openblip.tasks.inputs import require_caption_decoder, require_heads

    pipe = _pipeline(tmp_path, tiny_blip("caption", 0))
    require(require_caption_decoder, pipe)
    with pytest.raises(UsageError, match=r"^model models/tiny-caption: image-text matching needs the ITC/ITM heads"):
        require(lambda m: require_heads(m, "image-text matching"), pipe)


def test_min_length_is_capped_when_left_out_and_refused_when_contradictory() -> None:
    def args(max_length: int, min_length: int | None) -> argparse.Namespace:
        return argparse.Namespace(max_length=max_length, min_length=min_length)

    assert min_length_of(args(20, None), default=5) == 5
    assert min_length_of(args(3, None), default=5) == 3  # --max-length 3 alone is fine
    assert min_length_of(args(8, 8), default=5) == 8
    with pytest.raises(UsageError, match="--min-length 12 is greater than --max-length 8"):
        min_length_of(args(8, 12), default=5)


def test_text_error() -> None:
    from openblip.tasks.inputs import check_text

    assert text_error(check_text, "a dog", 0) is None
    assert text_error(check_text, "!!!", 3) == "text 3 is empty ('!!!' after cleaning)"


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", "1e999"])
def test_finite_float_refuses_what_no_decoding_setting_can_be(value: str) -> None:
    import argparse

    from openblip.cli.common import finite_float

    with pytest.raises(argparse.ArgumentTypeError, match="not a finite number"):
        finite_float(value)
    with pytest.raises(argparse.ArgumentTypeError, match="invalid number 'abc'"):
        finite_float("abc")
    assert finite_float(" 0.25 ") == 0.25 and finite_float("-2") == -2.0


@pytest.mark.parametrize("command", ["caption", "vqa", "match", "index", "classify"])
def test_help_says_in_which_order_records_come(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from openblip.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "records follow the arguments' order" in text and "in sorted path order" in text
    assert ("'-' reads one image from standard input" in text) == (command != "index")
