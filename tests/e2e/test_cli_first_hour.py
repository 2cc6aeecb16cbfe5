"""What a new user meets first, end to end in a subprocess: a real folder (images beside
sidecars), a misspelt option, a wrong file given as the model, CSV columns, the mode of written
model files, and help for every option."""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil

import pytest

from openblip.cli import build_parser, main


def test_a_folder_with_sidecars_gives_one_record_per_image(cli, models, images, tmp_path) -> None:
    folder = tmp_path / "stamps"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(images[0], folder / "a.png")
    shutil.copy(images[2], folder / "sub" / "b.JPG")
    for sidecar in ("a.txt", "a.ogg", "sub/b.txt", "README"):
        (folder / sidecar).write_text("not an image\n")
    notes = tmp_path / "notes.txt"  # named explicitly: still tried, gets an error record
    notes.write_text("x\n")
    out = tmp_path / "caps.csv"
    r = cli("caption", str(notes), str(folder), "--model", models["full"], "--max-length", "8", "--output", str(out))
    assert r.code == 1, r.stderr  # the explicit text file failed; the folder's images did not
    assert r.stderr.count("skipped 4 files without an image extension") == 1 and "--all-files" in r.stderr
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    # the command's columns, whatever the first record holds (here an error)
    assert rows[0] == ["image", "caption", "error"]
    assert [row[0] for row in rows[1:]] == [str(notes), str(folder / "a.png"), str(folder / "sub" / "b.JPG")]
    assert rows[1][1] == "" and "not an image" in rows[1][2]
    assert all(row[1] and not row[2] for row in rows[2:])


def test_a_misspelt_option_shows_the_subcommand_usage_and_the_closest_option(cli) -> None:
    r = cli("caption", "a.png", "--model", "M", "--beams", "5")
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: openblip caption ")
    assert "unrecognized arguments: --beams 5 (did you mean --num-beams?)" in r.stderr


def test_a_text_file_as_model_says_what_a_model_is(cli, images, tmp_path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("a dog on a beach\n")
    r = cli("caption", images[0], "--model", str(texts))
    assert r.code == 2 and r.stdout == ""
    assert "texts.txt: a text file, not a model checkpoint" in r.stderr
    assert "an openblip directory" in r.stderr and "a hub id such as" in r.stderr
    assert "pop from empty list" not in r.stderr
    r = cli("convert", str(texts), "--out", str(tmp_path / "out"))
    assert r.code == 2 and "a text file, not a model checkpoint" in r.stderr  # as every other command


def test_written_model_files_follow_the_umask(cli, models, tmp_path) -> None:
    """safetensors writes 0600; the model files get 0666 less the umask, as any new file (the hf
    export is checked in tests/parity/test_export_parity.py)."""
    out = tmp_path / "model"
    r = cli("convert", models["full"], "--out", str(out), extra_env={})
    assert r.code == 0, r.stderr
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {oct(0o666 & ~_umask())}, modes


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_every_option_of_every_command_has_help(cli) -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        for action in sub._actions:
            if action.option_strings or not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"openblip {name} {action.option_strings or action.dest}: no help"
    r = cli("eval", "--help")
    assert r.code == 0
    assert "--beams NUM_BEAMS     deprecated spelling of --num-beams" in r.stdout
    for metric in ("txt_r1", "itc_txt_r1", "shuffled_f1", "CIDEr", "vqa_accuracy", "chance_r1"):
        assert re.search(rf"^  {re.escape(metric)} +(%|fraction|count) +\w", r.stdout, re.M), metric


def test_a_misspelt_option_of_a_nested_command_names_its_own_options(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["data", "synth", "--out", "x", "--sizee", "ci"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: openblip data synth ")
    assert "unrecognized arguments: --sizee ci (did you mean --size?)" in err
    with pytest.raises(SystemExit):
        main(["eval", "--model", "M", "--data", "d", "--task", "vqa", "--zzz"])
    assert "(did you mean" not in capsys.readouterr().err  # nothing close: no guess
