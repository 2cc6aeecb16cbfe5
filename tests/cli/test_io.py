from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openblip.cli import UsageError
from openblip.cli.io import RecordWriter, check_output, expand_inputs, read_list


def test_expand_inputs(tmp_path) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / ".git").mkdir()
    for name in ("b.png", "a.jpg", "sub/c.txt", ".hidden", ".git/x.png"):
        (d / name).write_bytes(b"x")
    (tmp_path / "empty.jpg").mkdir()
    f = str(tmp_path / "f.png")
    got = expand_inputs([str(d), f, str(d / "a.jpg"), str(tmp_path / "empty.jpg")])
    assert got == [str(d / "a.jpg"), str(d / "b.png"), os.path.join(d, "sub", "c.txt"), f, str(tmp_path / "empty.jpg")]


def test_read_list(tmp_path) -> None:
    lines = tmp_path / "l.txt"
    lines.write_text("yes\n\n  no \r\ntwo dogs\n")
    assert read_list(str(lines), "answers") == ["yes", "no", "two dogs"]
    js = tmp_path / "l.json"
    js.write_text(json.dumps(["a", " ", "b"]))
    assert read_list(str(js), "answers") == ["a", "b"]
    js.write_text("[1, 2]")
    with pytest.raises(UsageError, match="JSON list of strings"):
        read_list(str(js), "answers")
    lines.write_text("\n\n")
    with pytest.raises(UsageError, match="no answers"):
        read_list(str(lines), "answers")
    with pytest.raises(UsageError, match="cannot read"):
        read_list(str(tmp_path / "missing"), "answers")


RECORDS = [
    {"image": "a.png", "captions": ["x", "y"]},
    {"image": "b.png", "error": "b.png: broken"},
    {"image": "c.png", "captions": ["z"]},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_writers(tmp_path, suffix: str) -> None:
    path = str(tmp_path / f"out{suffix}")
    with RecordWriter(path) as w:
        w.write_all(RECORDS)
    assert w.failed and w.exit_code == 1 and w.count == 3
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        assert rows == RECORDS
    elif suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        assert [r["image"] for r in rows] == ["a.png", "b.png", "c.png"]
        assert rows[0]["captions"] == ["x", "y"] and rows[1]["captions"] is None and rows[1]["error"]
    else:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["image", "captions", "error"]
        assert json.loads(rows[0]["captions"]) == ["x", "y"] and rows[1]["error"] == "b.png: broken"


def test_stdout_and_exit_code(capsys) -> None:
    with RecordWriter(None) as w:
        w.write({"image": "a", "caption": "ü"})
    assert w.exit_code == 0
    assert json.loads(capsys.readouterr().out) == {"image": "a", "caption": "ü"}


def test_unknown_extension() -> None:
    with pytest.raises(UsageError, match="unknown extension"):
        check_output("x.xlsx")
    check_output(None)
    check_output("X.JSONL")
