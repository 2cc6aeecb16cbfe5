from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from openblip.data.sample import BadSample
from openblip.data.shard_writer import ShardWriter
from openblip.data.webdataset import iter_shards, list_shards


def _write(out: Path, n: int, per_shard: int, jpeg: Callable[..., bytes]) -> list[str]:
    with ShardWriter(out, samples_per_shard=per_shard) as w:
        return [w.write(jpeg(i), f"caption {i}", {"i": i}) for i in range(n)]


def _raw_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_reads_back_what_was_written(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    keys = _write(tmp_path, 7, 3, jpeg)
    samples = list(iter_shards(tmp_path))
    assert [s.key for s in samples] == keys
    assert [s.text for s in samples] == [f"caption {i}" for i in range(7)]
    assert [s.meta["i"] for s in samples] == list(range(7))
    assert samples[4].image_bytes == jpeg(4) and samples[4].meta["key"] == keys[4]
    assert list_shards(tmp_path) == [tmp_path / f"0000{i}.tar" for i in range(3)]
    assert [s.key for s in iter_shards([tmp_path / "00002.tar", tmp_path / "00000.tar"])] == keys[6:] + keys[:3]


@pytest.mark.parametrize("start", [0, 1, 3, 5, 7, 9])
def test_resume_at_offset_is_the_suffix(tmp_path: Path, jpeg: Callable[..., bytes], start: int) -> None:
    keys = _write(tmp_path, 7, 3, jpeg)
    resumed = list(iter_shards(tmp_path, start=start))
    assert [s.key for s in resumed] == keys[start:]
    assert all(s.image_bytes == jpeg(s.meta["i"]) for s in resumed)


def test_two_workers_split_shards_without_overlap_or_loss(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    keys = _write(tmp_path, 11, 3, jpeg)  # 4 shards
    parts = [[s.key for s in iter_shards(tmp_path, worker=w, num_workers=2)] for w in range(2)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == keys
    assert parts[0] == keys[0:3] + keys[6:9]  # shards 0 and 2
    # resuming a worker skips within its own stream
    assert [s.key for s in iter_shards(tmp_path, worker=1, num_workers=2, start=4)] == parts[1][4:]


def test_bad_split_arguments_fail_at_call_time(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    _write(tmp_path, 2, 2, jpeg)
    with pytest.raises(ValueError, match="worker 2"):
        iter_shards(tmp_path, worker=2, num_workers=2)
    with pytest.raises(ValueError, match="start"):
        iter_shards(tmp_path, start=-1)
    with pytest.raises(FileNotFoundError, match="nope"):
        iter_shards(tmp_path / "nope")


def test_corrupt_and_incomplete_members_are_skipped_and_reported(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    good = jpeg(1)
    _raw_tar(
        tmp_path / "00000.tar",
        [
            ("a.jpg", good),
            ("a.txt", b"first"),
            ("a.json", b'{"x": 1}'),
            ("b.jpg", good),
            ("b.json", b"{not json"),  # corrupt json
            ("c.jpg", good),
            ("c.txt", b"\xff\xfe bad utf8"),  # corrupt txt
            ("d.jpg", good),
            ("d.json", b'{"caption": "from json"}'),  # no .txt
            ("e.jpg", good),  # neither .txt nor .json
            ("f.txt", b"no image"),
            ("f.json", b"{}"),
            ("g.png", b""),  # empty image
            ("h.jpg", b"garbage, not a jpeg"),
            ("h.txt", b"undecodable"),
            ("i.jpg", good),
            ("i.json", b"[1, 2]"),  # json, but not an object
            ("dir/j.jpg", good),
            ("dir/j.txt", b"nested"),
        ],
    )
    bad: list[BadSample] = []
    samples = list(iter_shards(tmp_path, on_error=bad.append))
    assert [(s.key, s.text) for s in samples] == [
        ("a", "first"),
        ("d", "from json"),
        ("e", None),
        ("h", "undecodable"),
        ("dir/j", "nested"),
    ]
    assert samples[0].meta == {"x": 1} and samples[2].meta == {}
    assert [b.key for b in bad] == ["b", "c", "f", "g", "i"]
    assert "JSONDecodeError" in bad[0].reason and "UnicodeDecodeError" in bad[1].reason
    assert "no image" in bad[2].reason and "empty" in bad[3].reason and "JSON object" in bad[4].reason
    assert all(b.source == str(tmp_path / "00000.tar") for b in bad)

    bad.clear()
    verified = [s.key for s in iter_shards(tmp_path, verify_images=True, on_error=bad.append)]
    assert verified == ["a", "d", "e", "dir/j"]
    assert [b.key for b in bad] == ["b", "c", "f", "g", "h", "i"] and "undecodable image" in bad[4].reason
    # offsets count good samples only, so a resumed stream matches the uninterrupted one
    assert [s.key for s in iter_shards(tmp_path, start=2, on_error=bad.append)] == ["e", "h", "dir/j"]


def test_truncated_and_unreadable_shards_do_not_stop_the_stream(
    tmp_path: Path, jpeg: Callable[..., bytes], caplog: pytest.LogCaptureFixture
) -> None:
    keys = _write(tmp_path, 9, 3, jpeg)
    data = (tmp_path / "00001.tar").read_bytes()
    (tmp_path / "00001.tar").write_bytes(data[: len(data) // 2])  # cut mid-member
    (tmp_path / "00002.tar").write_bytes(b"")
    bad: list[BadSample] = []
    got = [s.key for s in iter_shards(tmp_path, on_error=bad.append)]
    assert got[:3] == keys[:3] and got[3:] == keys[3 : len(got)]
    assert 3 <= len(got) < 6
    reasons = " | ".join(f"{Path(b.source).name}: {b.reason}" for b in bad)
    assert "00001.tar" in reasons and "00002.tar: unreadable tar" in reasons
    assert "unexpected end of data" in reasons
    with caplog.at_level("WARNING"):
        list(iter_shards(tmp_path))
    assert "00002.tar" in caplog.text  # the default on_error logs
    # a tar cut exactly at a member boundary reads as a shorter, valid tar: only the stats reveal it
    with tarfile.open(tmp_path / "00000.tar") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()[:4]]  # type: ignore[union-attr]
    _raw_tar(tmp_path / "00000.tar", members)
    bad.clear()
    assert [s.key for s in iter_shards(tmp_path / "00000.tar", on_error=bad.append)] == keys[:2]
    assert [b.reason for b in bad] == ["shard holds 2 samples but 00000_stats.json says 3"]


def test_hidden_temporaries_are_not_shards(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    _write(tmp_path, 2, 5, jpeg)
    (tmp_path / ".00001.tar.tmp").write_bytes(b"partial")
    assert list_shards(tmp_path) == [tmp_path / "00000.tar"]
    assert json.loads((tmp_path / "00000_stats.json").read_text())["successes"] == 2
