from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openblip.data.files import iter_image_folder, iter_image_list
from openblip.data.sample import BadSample


def _folder(root: Path, jpeg: Callable[..., bytes]) -> None:
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(["b.jpg", "a.png", "sub/c.jpeg", "sub/d.jpg"]):
        (root / name).write_bytes(jpeg(i))
    (root / "a.txt").write_text("caption a")
    (root / "sub" / "c.json").write_text(json.dumps({"caption": "caption c", "noise": "clean"}))
    (root / "sub" / "d.json").write_text("{broken")
    (root / "notes.txt").write_text("not an image")


def test_image_folder_with_sidecars(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    _folder(tmp_path, jpeg)
    bad: list[BadSample] = []
    samples = list(iter_image_folder(tmp_path, on_error=bad.append))
    assert [(s.key, s.text) for s in samples] == [("a", "caption a"), ("b", None), ("sub/c", "caption c")]
    assert samples[0].image_bytes == jpeg(1) and samples[2].meta == {"caption": "caption c", "noise": "clean"}
    assert [(b.key, "bad sidecar" in b.reason) for b in bad] == [("sub/d", True)]
    parts = [[s.key for s in iter_image_folder(tmp_path, worker=w, num_workers=2)] for w in range(2)]
    assert parts == [["a", "sub/c"], ["b"]]  # rows a, b, sub/c, sub/d by worker i % 2; sub/d is bad
    assert [s.key for s in iter_image_folder(tmp_path, start=2)] == ["sub/c"]
    with pytest.raises(FileNotFoundError, match="missing"):
        iter_image_folder(tmp_path / "missing")


def test_jsonl_and_parquet_lists(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    (tmp_path / "img").mkdir()
    for i in range(3):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(jpeg(i))
    rows: list[dict[str, Any]] = [
        {"image": "img/0.jpg", "caption": "zero", "key": "k0", "source": "web"},
        {"image": "img/1.jpg", "caption": None},
        {"image": "img/missing.jpg", "caption": "gone"},
        {"image": "img/2.jpg", "caption": "two"},
    ]
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, "{not json")
    (tmp_path / "list.jsonl").write_text("\n".join(lines) + "\n\n")
    bad: list[BadSample] = []
    samples = list(iter_image_list(tmp_path / "list.jsonl", on_error=bad.append))
    assert [(s.key, s.text) for s in samples] == [("k0", "zero"), ("000000001", None), ("000000004", "two")]
    assert samples[0].meta == {"source": "web"} and samples[2].image_bytes == jpeg(2)
    assert [(Path(b.source).name, b.key) for b in bad] == [("list.jsonl:3", None), ("list.jsonl:4", "000000003")]
    assert "bad json" in bad[0].reason and "missing.jpg" in bad[1].reason

    table = pa.Table.from_pylist([{"path": r["image"], "text": r["caption"]} for r in rows])
    pq.write_table(table, tmp_path / "l.parquet")
    got = list(iter_image_list(tmp_path / "l.parquet", image_field="path", text_field="text", on_error=bad.append))
    assert [s.text for s in got] == ["zero", None, "two"]
    odd = iter_image_list(tmp_path / "l.parquet", image_field="path", text_field="text", worker=1, num_workers=2)
    assert [s.key for s in odd] == ["000000001", "000000003"]  # rows 1 and 3
    with pytest.raises(ValueError, match=r"\.jsonl or \.parquet"):
        iter_image_list(tmp_path / "img" / "0.jpg")
