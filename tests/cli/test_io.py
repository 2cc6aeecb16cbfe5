from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openblip.cli import UsageError
from openblip.cli.io import RecordWriter, UnusableInput, check_output, expand_inputs, read_list, read_partial


def test_expand_inputs(tmp_path) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / ".git").mkdir()
    for name in ("b.png", "a.jpg", "sub/c.txt", ".hidden", ".git/x.png"):
        (d / name).write_bytes(b"x")
    (tmp_path / "empty.jpg").mkdir()
    f = str(tmp_path / "f.png")
    got = expand_inputs([str(d), f, str(d / "a.jpg"), str(tmp_path / "empty.jpg")], all_files=True)
    assert got == [str(d / "a.jpg"), str(d / "b.png"), os.path.join(d, "sub", "c.txt"), f, str(tmp_path / "empty.jpg")]
    assert "directory holds no files" in got[-1].error  # an item, whose record says why


def test_directories_expand_to_image_files_and_say_once_how_many_others_were_skipped(tmp_path, capsys) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    for name in ("b.PNG", "a.jpg", "a.txt", "a.json", "sub/c.webp", "sub/c.ogg", ".hidden.txt"):
        (d / name).write_bytes(b"x")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    only_text = tmp_path / "only_text"
    only_text.mkdir()
    (only_text / "x.txt").write_text("x")
    got = expand_inputs([str(d), str(notes), str(only_text)])
    # a file named explicitly is kept whatever its name: it gets its own record
    assert got == [str(d / "a.jpg"), str(d / "b.PNG"), os.path.join(d, "sub", "c.webp"), str(notes), str(only_text)]
    assert got[-1].error == f"{only_text}: directory holds no image files (1 other files skipped) " + (
        "(names starting with '.' are skipped)"
    )
    err = capsys.readouterr().err
    assert err.count("skipped") == 1 and "skipped 4 files without an image extension" in err
    assert "--all-files" in err
    assert expand_inputs([str(d / "sub")], all_files=True) == [os.path.join(d, "sub", n) for n in ("c.ogg", "c.webp")]
    assert capsys.readouterr().err == ""  # nothing skipped, nothing said


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
        for record in RECORDS:
            w.write(record)
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


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_columns_are_the_commands_not_the_first_records(tmp_path, suffix: str) -> None:
    path = str(tmp_path / f"out{suffix}")
    with RecordWriter(path, ("image", "caption", "error")) as w:
        w.write({"image": "a.png", "error": "a.png: broken"})
        w.write({"image": "b.png", "caption": "x", "extra": 1})
    if suffix == ".parquet":
        assert pq.read_table(path).column_names == ["image", "caption", "error", "extra"]
    else:
        with open(path, newline="") as f:
            assert next(csv.reader(f)) == ["image", "caption", "error", "extra"]
    with RecordWriter(path, ("image", "caption", "error")) as w:  # no failure: the column is still there
        w.write({"image": "b.png", "caption": "x"})
    if suffix == ".csv":
        with open(path, newline="") as f:
            assert list(csv.reader(f)) == [["image", "caption", "error"], ["b.png", "x", ""]]


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


def test_expand_inputs_keeps_a_path_once_however_spelled(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        (tmp_path / "d" / name).write_bytes(b"x")
    got = expand_inputs(["d", "./d/", "d//a.png", str(tmp_path / "d" / "sub" / "b.png"), "-", "-", "missing.png"])
    assert got == ["d/a.png", os.path.join("d", "sub", "b.png"), "-", "missing.png"]


def test_read_list_ignores_a_byte_order_mark(tmp_path) -> None:
    lines, js = tmp_path / "l.txt", tmp_path / "l.json"
    lines.write_bytes("yes\nno\n".encode("utf-8-sig"))
    js.write_bytes(json.dumps(["a", "b"]).encode("utf-8-sig"))
    assert read_list(str(lines), "answers") == ["yes", "no"]
    assert read_list(str(js), "answers") == ["a", "b"]


def test_outputs_that_cannot_be_written_are_refused_up_front(tmp_path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    refused = {
        str(tmp_path / "no" / "such" / "out.jsonl"): "no such directory",
        str(tmp_path / "dir.jsonl"): "is a directory",
        str(tmp_path / "new.csv") + "/": "is a directory",
        "x.xlsx": "unknown extension",
    }
    for path, message in refused.items():
        with pytest.raises(UsageError, match=message):
            check_output(path)
    check_output(str(tmp_path / "fine.parquet"))


# A file name that is not valid UTF-8, as Python gives it (os.fsdecode: lone surrogates).
UNDECODABLE = os.fsdecode(b"caf\xe9.png")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_writers_take_undecodable_file_names(tmp_path, suffix: str) -> None:
    path = str(tmp_path / f"out{suffix}")
    with RecordWriter(path) as w:
        w.write({"image": UNDECODABLE, "captions": ["a", "b"]})
        w.write({"image": "ü.png", "error": f"{UNDECODABLE}: broken"})
    raw = Path(path).read_bytes() if suffix != ".parquet" else b""
    raw.decode("utf-8")  # valid UTF-8 throughout
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in raw.decode().splitlines()]
        assert rows[0]["image"] == UNDECODABLE and os.fsencode(rows[0]["image"]) == b"caf\xe9.png"
        assert rows[1] == {"image": "ü.png", "error": f"{UNDECODABLE}: broken"}
    elif suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        assert rows[0]["image"] == "caf\ufffd.png" and rows[0]["captions"] == ["a", "b"]
        assert rows[1]["image"] == "ü.png" and rows[1]["error"] == "caf\ufffd.png: broken"
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert [r["image"] for r in rows] == ["caf\ufffd.png", "ü.png"]


def test_expand_inputs_follows_directory_links_once(tmp_path) -> None:
    d = tmp_path / "d"
    (d / "real").mkdir(parents=True)
    (d / "real" / "x.png").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", d / "linked")  # a link to a directory outside d
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "y.png").write_bytes(b"y")
    os.symlink(d, d / "real" / "loop")  # a cycle back to d
    got = expand_inputs([str(d)])
    assert got == [str(d / "linked" / "y.png"), str(d / "real" / "x.png")]


def test_parquet_and_csv_stream_to_a_sidecar_that_the_close_converts(tmp_path) -> None:
    name = os.fsdecode(b"caf\xe9.png")  # undecodable: escaped in the sidecar, U+FFFD in the final file
    records = [{"image": name, "caption": "a dog", "score": 0.125}, {"image": "b.png", "error": "bad", "n": [1, 2]}]
    for suffix in (".parquet", ".csv"):
        path = str(tmp_path / f"out{suffix}")
        sidecar = Path(path + ".partial.jsonl")
        w = RecordWriter(path)
        w.write(records[0])
        # not closed (a killed run): the finished record is already on disk, in the .jsonl encoding
        assert [json.loads(line) for line in sidecar.read_text(encoding="utf-8").splitlines()] == records[:1]
        assert read_partial(str(sidecar)) == records[:1]
        assert not os.path.exists(path)
        w.write(records[1])
        w.close()
        assert not sidecar.exists() and w.exit_code == 1
        fixed = os.fsencode(name).decode("utf-8", "replace")
        if suffix == ".parquet":
            assert pq.read_table(path).to_pylist() == [
                {"image": fixed, "caption": "a dog", "score": 0.125, "error": None, "n": None},
                {"image": "b.png", "caption": None, "score": None, "error": "bad", "n": [1, 2]},
            ]
        else:
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            assert rows == [
                {"image": fixed, "caption": "a dog", "score": "0.125", "error": "", "n": ""},
                {"image": "b.png", "caption": "", "score": "", "error": "bad", "n": "[1, 2]"},
            ]


def test_a_sidecar_line_cut_short_by_a_kill_is_dropped(tmp_path) -> None:
    p = tmp_path / "x.partial.jsonl"
    p.write_text('{"image": "a.png", "caption": "a"}\n{"image": "b.p', encoding="utf-8")
    assert read_partial(str(p)) == [{"image": "a.png", "caption": "a"}]


def test_jsonl_output_is_flushed_per_record(tmp_path) -> None:
    path = tmp_path / "out.jsonl"
    w = RecordWriter(str(path))
    w.write({"image": "a.png", "caption": "x"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"image": "a.png", "caption": "x"}
    w.close()


def test_special_files_in_a_directory_are_items_that_are_never_opened(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    os.mkfifo(tmp_path / "b.fifo")
    got = expand_inputs([str(tmp_path)], all_files=True)
    assert got == [str(tmp_path / "a.png"), str(tmp_path / "b.fifo")]
    assert not isinstance(got[0], UnusableInput)
    assert isinstance(got[1], UnusableInput) and "not a regular file (named pipe)" in got[1].error
    named = expand_inputs([str(tmp_path / "b.fifo"), "-", str(tmp_path / "missing.png")])  # "-" is stdin
    assert named == [str(tmp_path / "b.fifo"), "-", str(tmp_path / "missing.png")]
    assert [isinstance(x, UnusableInput) for x in named] == [True, False, False]


def test_an_unreadable_subdirectory_is_an_item_naming_it(tmp_path, monkeypatch) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.png").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.png").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):  # chmod 000 does not stop root: refuse the way the kernel would
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    got = expand_inputs([str(tmp_path)])
    assert got == [str(tmp_path / "locked"), str(tmp_path / "ok" / "a.png")]
    assert isinstance(got[0], UnusableInput)
    assert got[0].error == f"{tmp_path / 'locked'}: cannot read directory (Permission denied)"
