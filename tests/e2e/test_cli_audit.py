"""Failures found by the second acceptance audit of the inference commands, each run through
`openblip.cli.main` in-process with the tiny e2e checkpoints (tests/e2e/conftest.py)."""

from __future__ import annotations

import json

import pytest


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


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


@pytest.mark.parametrize("lost", ["part-000000.npy", "part-000000.jsonl", "truncated npy"])
def test_a_damaged_index_is_a_usage_error_naming_it(lost: str, models, images, tmp_path, capsys) -> None:
    """An index whose part files are missing or cut short is refused by `search` and by
    `index` (adding to it, which would put new rows behind the damage), with a message naming
    the directory: no traceback."""
    from openblip.cli import main

    idx = tmp_path / "idx"
    assert main(["index", *images[:2], "--index", str(idx), "--model", models["full"]]) == 0
    capsys.readouterr()
    if lost == "truncated npy":
        npy = idx / "part-000000.npy"
        npy.write_bytes(npy.read_bytes()[:100])
    else:
        (idx / lost).unlink()
    assert main(["search", "--index", str(idx), "--text", "a dog"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"--index {idx}: damaged index (" in captured.err, captured.err
    # adding to it is refused too: new parts behind a damaged one would make an index search refuses
    assert main(["index", images[2], "--index", str(idx)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"--index {idx}: damaged index (" in captured.err, captured.err
    assert json.loads((idx / "index.json").read_text())["parts"] == [{"name": "part-000000", "count": 2}]


def test_classify_counts_a_repeated_label_once(models, images, tmp_path, capsys) -> None:
    """A label given twice (a labels file with a repeat) is one label: it is reported once and
    does not take probability from the others."""
    from openblip.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("dog\ncat\n\ndog\nbird\n")
    base = ["classify", images[0], "--model", models["full"], "--top-k", "10"]
    assert main([*base, "--labels", "dog,cat,bird"]) == 0
    once = _records(capsys.readouterr().out)
    assert main([*base, "--labels-file", str(labels)]) == 0
    from_file = _records(capsys.readouterr().out)
    assert main([*base, "--labels", "dog,cat,dog,bird,cat"]) == 0
    repeated = _records(capsys.readouterr().out)
    assert sorted(once[0]["labels"]) == ["bird", "cat", "dog"]
    for got in (from_file, repeated):
        assert got[0]["labels"] == once[0]["labels"]
        assert got[0]["probabilities"] == pytest.approx(once[0]["probabilities"], abs=1e-6)


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
