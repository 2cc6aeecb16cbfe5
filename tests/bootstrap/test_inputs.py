"""Shard discovery and per-shard reading (bootstrap/inputs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openblip.bootstrap.inputs import ShardKind, error_reason, expand_braces, find_shards, read_shard

from .conftest import jpeg_bytes, write_tar


def test_expand_braces() -> None:
    assert expand_braces("web/{00008..00011}.tar") == [f"web/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert expand_braces("x{3..1}") == ["x3", "x2", "x1"]
    assert expand_braces("plain{x}.tar") == ["plain{x}.tar"]


def test_find_shards_every_kind(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    for i in range(3):
        write_tar(tmp_path / "web" / f"{i:05d}.tar", [("k.jpg", jpeg_bytes(i)), ("k.txt", b"t")])
    (tmp_path / "other").mkdir()
    write_tar(tmp_path / "other" / "00000.tar", [("k.jpg", jpeg_bytes(9)), ("k.txt", b"t")])
    (tmp_path / "list.jsonl").write_text(json.dumps({"image": "x.jpg", "caption": "c"}) + "\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.jpg").write_bytes(jpeg_bytes(1))
    shards = find_shards(
        [
            str(tmp_path / "web" / "{00000..00001}.tar"),
            str(tmp_path / "web"),  # 00000 and 00001 again: once
            str(tmp_path / "other" / "*.tar"),
            str(tmp_path / "list.jsonl"),
            str(tmp_path / "folder"),
        ]
    )
    assert [(s.name, s.kind) for s in shards] == [
        ("web_00000", ShardKind.TAR),
        ("00001", ShardKind.TAR),
        ("00002", ShardKind.TAR),
        ("other_00000", ShardKind.TAR),
        ("list", ShardKind.LIST),
        ("folder", ShardKind.FOLDER),
    ]
    with pytest.raises(FileNotFoundError, match=r"nothing\.tar"):
        find_shards([str(tmp_path / "nothing.tar")])
    with pytest.raises(FileNotFoundError, match="no file matches"):
        find_shards([str(tmp_path / "web" / "*.parquet")])
    (tmp_path / "notes.csv").write_text("x")
    with pytest.raises(ValueError, match=r"notes\.csv"):
        find_shards([str(tmp_path / "notes.csv")])


def test_read_shard_rows_and_reasons(mixed_dir: Path) -> None:
    from .conftest import BAD

    (shard,) = find_shards([str(mixed_dir / "a.tar")])
    problems: list[str] = []
    rows = list(read_shard(shard, problems))
    assert problems == []
    assert [r.key for r in rows] == [f"k{i:02d}" for i in range(11)]
    assert [r.index for r in rows] == list(range(11))
    reader_errors = {r.key: error_reason(r.error) for r in rows if r.error}
    # the reader finds these; decode (images) and the text check (k09) find the others
    assert reader_errors == {k: BAD[k] for k in ("k04", "k05", "k06", "k07")}


def test_unreadable_shard_is_a_shard_error(mixed_dir: Path) -> None:
    (shard,) = find_shards([str(mixed_dir / "c.tar")])
    problems: list[str] = []
    assert list(read_shard(shard, problems)) == []
    assert len(problems) == 1 and "unreadable tar" in problems[0]


def test_parquet_list_with_image_bytes(tmp_path: Path) -> None:
    rows = [{"image": jpeg_bytes(0), "caption": "a", "key": "x0"}, {"image": b"", "caption": "b", "key": "x1"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "l.parquet")
    (shard,) = find_shards([str(tmp_path / "l.parquet")])
    got = list(read_shard(shard, []))
    assert [(r.key, r.text, r.error) for r in got] == [("x0", "a", None), ("x1", None, "empty image")]
    assert got[0].image == rows[0]["image"]


def test_jsonl_list_with_paths_and_image_folder_with_sidecars(tmp_path: Path) -> None:
    """A list's image paths are relative to the list; a folder's texts are .txt sidecars. Samples
    that cannot be used are rows with their reason, in order."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(jpeg_bytes(1))
    lines = [
        {"image": "imgs/a.jpg", "caption": "a red circle", "noise": "clean"},
        {"image": "imgs/missing.jpg", "caption": "x"},
        {"image": "imgs/a.jpg"},
        {"image": "imgs/a.jpg", "caption": "again", "key": "named"},
    ]
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(2))
    (folder / "a.txt").write_text("a blue square")
    (folder / "b.jpg").write_bytes(jpeg_bytes(3))  # no sidecar
    (folder / "c.txt").write_text("a text without an image: not a sample")
    listed, images = find_shards([str(tmp_path / "list.jsonl"), str(folder)])
    got = list(read_shard(listed, []))
    assert [r.index for r in got] == [0, 1, 2, 3] and got[3].key == "named"
    assert (got[0].text, got[0].meta, got[0].error) == ("a red circle", {"noise": "clean"}, None)
    assert got[0].image == (tmp_path / "imgs" / "a.jpg").read_bytes()
    assert [error_reason(r.error) if r.error else None for r in got] == [None, "missing image", "missing text", None]
    got = list(read_shard(images, []))
    assert [(r.key, r.text) for r in got] == [("a", "a blue square"), ("b", None)]
    assert got[0].error is None and got[0].image == (folder / "a.jpg").read_bytes()
    assert got[1].error is not None and error_reason(got[1].error) == "missing text"


def test_error_reason_is_decided_by_the_problem_not_by_names() -> None:
    """Paths, member names, keys and texts may hold any word; only the problem decides."""
    cases = {
        "cannot read image /data/json/empty/truncated.jpg ([Errno 2] No such file)": "missing image",
        "no image member (has: k.json, k.txt)": "missing image",
        "web text is empty after cleaning ('!! json !!')": "empty text",
        "no text (no .txt sidecar and no caption in the json)": "missing text",
        "bad json line (Expecting value: line 1 column 1 (char 0))": "bad json",
        "JSONDecodeError: Expecting value: line 1 column 1 (char 0)": "bad json",
        "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9": "non-UTF-8 text",
        "model failed on this sample: empty tensor": "model failure",
    }
    for message, reason in cases.items():
        assert error_reason(message) == reason, message
    # an image error names the sample's key first
    assert error_reason("json_empty: truncated image data (OSError: x)", "json_empty") == "truncated image"
    assert error_reason("empty.jpg: too many pixels: 120x120 = 14400 > limit 10000", "empty.jpg") == "oversized image"
    assert error_reason("a: b: corrupt image header (x)", "a: b") == "corrupt image"
    assert error_reason("k: something new") == "other"
