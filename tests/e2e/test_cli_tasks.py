"""`openblip vqa`, `match` and `classify` end to end."""

from __future__ import annotations

import csv
import json

import pytest


def test_vqa_generate_with_an_empty_question_and_a_bad_image(cli, models, images, tmp_path) -> None:
    missing = str(tmp_path / "gone.png")
    r = cli(
        "vqa",
        images[0],
        missing,
        images[1],
        "--question",
        "What is this?",
        "--question",
        "  ",
        "--model",
        models["vqa"],
        "--max-length",
        "6",
    )
    assert r.code == 1, r.stderr
    assert [(x["image"], x["question"]) for x in r.records] == [
        (i, q) for i in (images[0], missing, images[1]) for q in ("What is this?", "  ")
    ]
    ok = [x for x in r.records if "answer" in x]
    assert [x["image"] for x in ok] == [images[0], images[1]]
    assert all(set(x) == {"image", "question", "answer"} and x["answer"] for x in ok)
    errors = [x for x in r.records if "error" in x]
    assert len(errors) == 4 and all(set(x) == {"image", "question", "error"} for x in errors)
    # the image's own failure is reported first; the empty question fails for every image
    assert [("empty" in x["error"], "no such file" in x["error"]) for x in errors] == [
        (True, False),
        (False, True),
        (False, True),
        (True, False),
    ]


def test_vqa_rank_mode_from_a_file(cli, models, images, tmp_path) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(["yes", "no", "two dogs", "red"]))
    r = cli("vqa", *images, "--question", "how many dogs?", "--answers", str(answers), "--model", models["vqa"])
    assert r.code == 0, r.stderr
    assert [x["image"] for x in r.records] == images
    assert all(x["answer"] in ("yes", "no", "two dogs", "red") for x in r.records)


def test_match_with_an_over_long_text(cli, models, images, tmp_path) -> None:
    long = " ".join(["an extremely long caption"] * 200)
    out = tmp_path / "match.jsonl"
    r = cli(
        "match", *images, "--text", "a dog on a beach", "--text", long, "--model", models["full"], "--output", str(out)
    )
    assert r.code == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["image"], x["text"]) for x in records] == [(i, t) for i in images for t in ("a dog on a beach", long)]
    for x in records:
        assert set(x) == {"image", "text", "itm_score", "itc_score"}
        assert 0.0 < x["itm_score"] < 1.0 and -1.0 <= x["itc_score"] <= 1.0


def test_classify_labels_and_labels_file(cli, models, images, tmp_path) -> None:
    r = cli("classify", *images, "--labels", "dog, cat,red car", "--model", models["full"], "--top-k", "2")
    assert r.code == 0, r.stderr
    for x in r.records:
        assert set(x) == {"image", "label", "probability", "labels", "probabilities"}
        assert x["label"] == x["labels"][0] and len(x["labels"]) == 2
        assert x["probabilities"] == sorted(x["probabilities"], reverse=True)
    labels = tmp_path / "labels.txt"
    labels.write_text("dog\ncat\n\nred car\n")
    out = tmp_path / "labels.csv"
    r2 = cli(
        "classify",
        images[0],
        str(tmp_path / "nope.png"),
        "--labels-file",
        str(labels),
        "--model",
        models["full"],
        "--top-k",
        "3",
        "--rerank",
        "3",
        "--output",
        str(out),
    )
    assert r2.code == 1
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["image"] == images[0] and sorted(json.loads(rows[0]["labels"])) == ["cat", "dog", "red car"]
    assert sum(json.loads(rows[0]["probabilities"])) == pytest.approx(1.0, abs=1e-5)
    assert "no such file" in rows[1]["error"]


def test_classify_counts_a_repeated_label_once(models, images, tmp_path, capsys) -> None:
    """A label given twice (a labels file with a repeat) is one label: it is reported once and
    does not take probability from the others."""
    from openblip.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("dog\ncat\n\ndog\nbird\n")
    base = ["classify", images[0], "--model", models["full"], "--top-k", "10"]
    assert main([*base, "--labels", "dog,cat,bird"]) == 0
    once = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert main([*base, "--labels-file", str(labels)]) == 0
    from_file = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert main([*base, "--labels", "dog,cat,dog,bird,cat"]) == 0
    repeated = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert sorted(once[0]["labels"]) == ["bird", "cat", "dog"]
    for got in (from_file, repeated):
        assert got[0]["labels"] == once[0]["labels"]
        assert got[0]["probabilities"] == pytest.approx(once[0]["probabilities"], abs=1e-6)
