"""`openblip index` and `openblip search` end to end."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from openblip.cli import main


def test_index_add_and_search_images(cli, models, images, tmp_path, capsys) -> None:
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    shutil.copy(images[0], gallery / "a.png")
    shutil.copy(images[1], gallery / "b.png")
    (gallery / "readme.txt").write_text("not an image")
    idx = str(tmp_path / "idx")
    first = cli("index", str(gallery), "--model", models["full"], "--index", idx)
    assert first.code == 0, first.stderr  # the text file is not an image file: skipped, and said
    assert "skipped 1 file without an image extension" in first.stderr
    assert [set(x) for x in first.records] == [{"image", "row"}, {"image", "row"}]
    shutil.copy(images[2], gallery / "c.jpg")
    second = cli("index", str(gallery / "a.png"), str(gallery / "c.jpg"), "--index", idx)  # model from the index
    assert second.code == 0, second.stderr
    assert second.records == [
        {"image": str(gallery / "a.png"), "row": 0, "skipped": "already indexed"},
        {"image": str(gallery / "c.jpg"), "row": 2},
    ]
    out = tmp_path / "hits.parquet"
    r = cli(
        "search",
        "--index",
        idx,
        "--text",
        "a dog",
        "--text",
        "a cat",
        "--k",
        "3",
        "--rerank",
        "2",
        "--output",
        str(out),
    )
    assert r.code == 0, r.stderr
    rows = pq.read_table(out).to_pylist()
    assert [(x["text"], x["rank"]) for x in rows] == [(t, k) for t in ("a dog", "a cat") for k in (1, 2, 3)]
    assert {x["image"] for x in rows} == {str(gallery / n) for n in ("a.png", "b.png", "c.jpg")}
    for x in rows:
        assert (x["itm_score"] is None) == (x["rank"] == 3)
    flat = cli("search", "--index", idx, "--text", "a dog", "--k", "3", "--rerank", "0", "--faiss")
    assert flat.code == 0 and [x["rank"] for x in flat.records] == [1, 2, 3]
    assert all(x["itm_score"] is None and x["score"] == x["itc_score"] for x in flat.records)
    # refusals, in-process (the same code path without another torch import)
    assert main(["search", "--index", idx, "--image", images[0]]) == 2
    assert "index of texts" in capsys.readouterr().err
    assert main(["search", "--index", idx, "--text", "a dog", "--model", models["vqa"]]) == 2
    assert "another model" in capsys.readouterr().err
    assert main(["index", "--texts", str(gallery / "readme.txt"), "--index", idx]) == 2
    assert "not texts" in capsys.readouterr().err


def test_text_index_and_image_queries(cli, models, images, tmp_path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("a dog on the beach\na red car\n\na bowl of fruit\n")
    idx = str(tmp_path / "tidx")
    r = cli("index", "--texts", str(texts), "--model", models["full"], "--index", idx)
    assert r.code == 0, r.stderr
    lines = ["a dog on the beach", "a red car", "a bowl of fruit"]
    assert r.records == [{"text": t, "row": i} for i, t in enumerate(lines)]
    missing = str(tmp_path / "missing.png")
    s = cli("search", "--index", idx, "--image", images[0], "--image", missing, "--k", "2")
    assert s.code == 1, s.stderr
    assert [(x["image"], x.get("rank")) for x in s.records] == [(images[0], 1), (images[0], 2), (missing, None)]
    assert set(s.records[0]) == {"image", "rank", "text", "score", "itc_score", "itm_score"}
    assert "no such file" in s.records[2]["error"]
    # a directory as --image is each of its images, sorted, like every other command's inputs
    folder = tmp_path / "queries"
    folder.mkdir()
    shutil.copy(images[1], folder / "b.png")
    shutil.copy(images[0], folder / "a.png")
    d = cli("search", "--index", idx, "--image", str(folder), "--k", "1", "--rerank", "0")
    assert d.code == 0, d.stderr
    assert [x["image"] for x in d.records] == [str(folder / "a.png"), str(folder / "b.png")]


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
