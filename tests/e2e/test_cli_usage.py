"""Usage errors exit with 2 before any work is done: one run in a subprocess, the rest through
`openblip.cli.main` in-process (same code path, without a torch import per case)."""

from __future__ import annotations

import pytest

from openblip.cli import main


def test_usage_error_in_a_subprocess(cli, tmp_path) -> None:
    r = cli("caption", "x.png", "--model", str(tmp_path / "no_such_model"), cwd=tmp_path)
    assert r.code == 2 and "cannot load model" in r.stderr and r.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["caption", "x.png", "--model", "M", "--bogus"], "unrecognized arguments"),
        (["caption", "x.png"], "--model"),
        (["vqa", "x.png", "--model", "M"], "--question"),
        (["match", "x.png", "--model", "M"], "--text"),
        (["classify", "x.png", "--model", "M"], "--labels"),
        (["search", "--text", "t"], "--index"),
    ],
)
def test_argparse_errors(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["match", "x.png", "--text", "t", "--model", "M", "--output", "out.xlsx"], "unknown extension"),
        (["classify", "x.png", "--model", "/nonexistent/model/dir", "--labels", "a,b"], "cannot load model"),
        (["classify", "x.png", "--model", "M", "--labels", " , "], "no labels"),
        (["classify", "x.png", "--model", "M", "--labels", "a", "--template", "a photo"], "template"),
        (["caption", "x.png", "--model", "M", "--sample", "--num-beams", "3"], "exclude each other"),
        (["caption", "x.png", "--model", "M", "--batch-size", "0"], "--batch-size"),
        (["caption", "x.png", "--model", "M", "--max-pixels", "0"], "--max-pixels"),
        (["vqa", "x.png", "--question", "q", "--answers", "/no/such/answers.txt", "--model", "M"], "cannot read"),
        (["index", "--index", "/no/such/idx", "--model", "M"], "nothing to index"),
        (["index", "x.png", "--index", "/no/such/idx"], "--model is required"),
        (["search", "--index", "/no/such/idx", "--text", "t"], "no index there"),
    ],
)
def test_usage_errors(args: list[str], message: str, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.xlsx").exists()


def test_a_label_with_nothing_left_after_cleaning_is_a_usage_error(models, images, capsys) -> None:
    assert main(["classify", images[0], "--model", models["full"], "--labels", "dog,!!!"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "label 1 is empty ('!!!' after cleaning)" in captured.err


def test_wrong_checkpoint_for_the_task(models, images, capsys) -> None:
    assert main(["vqa", images[0], "--question", "what?", "--model", models["full"]]) == 2
    assert "VQA checkpoint" in capsys.readouterr().err
    assert main(["caption", images[0], "--model", models["vqa"]]) == 2
    assert "VQA checkpoint" in capsys.readouterr().err
    assert main(["match", images[0], "--text", "a", "--model", models["vqa"]]) == 2
    assert "heads" in capsys.readouterr().err


def test_help_lists_the_inference_commands(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("caption", "vqa", "match", "index", "search", "classify"):
        assert name in out


@pytest.mark.parametrize("first_bad", [True, False])
def test_caption_settings_the_model_cannot_honour_are_refused_before_any_record(
    first_bad: bool, models, images, tmp_path, capsys
) -> None:
    """A prompt longer than --max-length is a usage error (exit 2, nothing written) even when
    the first batch holds only images that fail, or when every image fails."""
    from openblip.cli import main

    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image\n")
    inputs = [str(bad), images[0]] if first_bad else [str(bad)]
    args = ["caption", *inputs, "--model", models["full"], "--max-length", "3", "--batch-size", "1"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "the prompt takes 4 tokens ([DEC] included): max_length 3 leaves nothing to generate" in captured.err


@pytest.mark.parametrize(
    "flags",
    [
        ["--sample", "--temperature", "inf"],  # was: every image failed in the sampler (exit 1)
        ["--sample", "--temperature", "nan"],
        ["--repetition-penalty", "nan"],  # was: a silently meaningless caption (exit 0)
        ["--length-penalty", "nan"],
        ["--length-penalty=-inf"],
    ],
)
def test_non_finite_decoding_settings_are_usage_errors(flags: list[str], models, images, capsys) -> None:
    from openblip.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["caption", images[0], "--model", models["full"], "--max-length", "6", *flags])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "is not a finite number" in captured.err
