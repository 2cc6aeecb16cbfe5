"""`openblip caption` end to end: bad inputs become error records, output formats, exit codes."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest


def test_every_bad_input_gets_its_own_record(cli, models, bad_dir, tmp_path) -> None:
    missing = str(tmp_path / "missing.jpg")
    dir_like = tmp_path / "dir_like.jpg"
    dir_like.mkdir()
    r = cli(
        "caption",
        str(bad_dir),
        missing,
        str(dir_like),
        "--model",
        models["full"],
        "--max-length",
        "8",
        "--batch-size",
        "3",
        "--max-pixels",
        "20000",
        "--all-files",
    )
    assert r.code == 1, r.stderr
    names = [rec["image"] for rec in r.records]
    expected = sorted(str(p) for p in bad_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert names == [*expected, missing, str(dir_like)]  # input order, hidden file skipped
    by_name = {rec["image"].rsplit("/", 1)[-1]: rec for rec in r.records}
    for good in ("01_good.png", "07_good.jpg", "08_nested.png"):
        assert set(by_name[good]) == {"image", "caption"} and by_name[good]["caption"]
    reasons = {
        "02_corrupt.jpg": "corrupt",
        "03_empty.jpg": "empty",
        "04_huge.png": "too many pixels",
        "05_notes.txt": "not an image",
        "06_truncated.jpg": "truncated",
        "missing.jpg": "no such file",
        "dir_like.jpg": "directory",
    }
    for name, reason in reasons.items():
        rec = by_name[name]
        assert set(rec) == {"image", "error"}, rec
        assert reason in rec["error"] and name in rec["error"], rec


def test_pixel_limit_from_the_environment(cli, models, bad_dir) -> None:
    huge, good = str(bad_dir / "04_huge.png"), str(bad_dir / "01_good.png")
    r = cli(
        "caption",
        huge,
        good,
        "--model",
        models["full"],
        "--max-length",
        "8",
        extra_env={"OPENBLIP_MAX_PIXELS": "20000"},
    )
    assert r.code == 1 and "too many pixels" in r.records[0]["error"] and r.records[1]["caption"]


def test_outputs_and_num_captions(cli, models, images, tmp_path) -> None:
    out = tmp_path / "caps.parquet"
    r = cli(
        "caption", *images, "--model", models["full"], "--max-length", "10", "--num-captions", "3", "--output", str(out)
    )
    assert r.code == 0 and r.records == [], r.stderr
    rows = pq.read_table(out).to_pylist()
    assert [row["image"] for row in rows] == images
    assert all(len(row["captions"]) == 3 and len(set(row["captions"])) == 3 for row in rows)
    jl = tmp_path / "caps.jsonl"
    r = cli(
        "caption", *images, "--model", models["full"], "--max-length", "10", "--num-beams", "2", "--output", str(jl)
    )
    assert r.code == 0 and r.stdout == "", r.stderr
    records = [json.loads(line) for line in jl.read_text().splitlines()]
    assert [x["image"] for x in records] == images and all(set(x) == {"image", "caption"} for x in records)


def test_sampling_to_csv_is_seeded(cli, models, images, tmp_path) -> None:
    """Seeded samples are reproducible, and do not depend on --batch-size: each image samples from
    its own stream, keyed by its position in the input."""

    def sample(path, batch_size: int) -> list[dict[str, str]]:
        r = cli(
            "caption",
            *images,
            "--batch-size",
            str(batch_size),
            "--model",
            models["full"],
            "--sample",
            "--seed",
            "7",
            "--top-p",
            "0.8",
            "--top-k",
            "20",
            "--temperature",
            "0.9",
            "--max-length",
            "10",
            "--prompt",
            "",
            "--output",
            str(path),
        )
        assert r.code == 0, r.stderr
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    a, b = sample(tmp_path / "a.csv", 16), sample(tmp_path / "b.csv", 1)
    assert a == b and [row["image"] for row in a] == images and all(row["caption"] for row in a)


def test_scores_give_each_captions_word_probabilities(cli, models, images) -> None:
    """--scores: per caption its words' probabilities and mean log-prob, as the API returns them,
    for beam search (one caption and several) and for seeded nucleus sampling."""
    import openblip

    pipe = openblip.load(models["full"])
    for flags, options in (
        ([], {}),
        (["--num-captions", "2"], {"num_captions": 2}),
        (["--sample", "--seed", "3", "--num-captions", "2"], {"sample": True, "seed": 3, "num_captions": 2}),
    ):
        r = cli("caption", *images, "--model", models["full"], "--max-length", "10", "--scores", *flags)
        assert r.code == 0, r.stderr
        api = pipe.caption(images, max_length=10, **options)
        for record, result in zip(r.records, api, strict=True):
            rows = record["captions"] if "num_captions" in options else [record]
            assert len(rows) == len(result.captions)
            for row, cap in zip(rows, result.captions, strict=True):
                assert set(row) - {"image"} == {"caption", "words", "mean_logprob"} and row["caption"] == cap.text
                assert [w["word"] for w in row["words"]] == [w.word for w in cap.words] and row["words"]
                assert [w["prob"] for w in row["words"]] == pytest.approx([w.prob for w in cap.words], abs=1e-6)
                assert all(0.0 < w["prob"] <= 1.0 for w in row["words"])
                assert row["mean_logprob"] == pytest.approx(cap.mean_logprob, abs=1e-6) and row["mean_logprob"] < 0


def test_beam_rules_flag_reaches_the_beam_search(cli, models, images, monkeypatch) -> None:
    """--beam-rules picks GenerationConfig.beam_rules for caption and vqa (default: the original's
    transformers 4.15 rules); the CLI's captions equal the API's under the same rules."""
    import openblip
    from openblip.cli import build_parser
    from openblip.cli.common import beam_rules_of
    from openblip.model.generation_config import BeamRules

    parser = build_parser()
    for command in (["caption", "x.png", "--model", "m"], ["vqa", "x.png", "--question", "what?", "--model", "m"]):
        assert beam_rules_of(parser.parse_args(command)) is BeamRules.ORIGINAL
        chosen = parser.parse_args([*command, "--beam-rules", "transformers"])
        assert beam_rules_of(chosen) is BeamRules.TRANSFORMERS
    pipe = openblip.load(models["full"])
    for flag, rules in (("transformers", BeamRules.TRANSFORMERS), ("transformers-4.15", BeamRules.ORIGINAL)):
        r = cli("caption", *images, "--model", models["full"], "--max-length", "12", "--beam-rules", flag)
        assert r.code == 0, r.stderr
        api = pipe.caption(images, max_length=12, beam_rules=rules)
        assert [rec["caption"] for rec in r.records] == [res.caption for res in api]
    r = cli("caption", images[0], "--model", models["full"], "--beam-rules", "newest")
    assert r.code == 2 and "--beam-rules" in r.stderr
