from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openblip.data.shard_writer import PARQUET_SCHEMA, ShardWriter


def test_img2dataset_layout(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    with ShardWriter(tmp_path, samples_per_shard=4) as w:
        keys = [w.write(jpeg(i), f"caption {i}", {"noise": "clean", "index": i}) for i in range(10)]
    assert keys[:5] == ["000000000", "000000001", "000000002", "000000003", "000000010"]
    assert keys[-1] == "000000021"  # shard 2, index 1: shard * 10**ceil(log10(4)) + index
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"0000{s}{suffix}" for s in range(3) for suffix in (".parquet", ".tar", "_stats.json")
    ]
    assert w.count == 10 and [p.name for p in w.shards] == ["00000.tar", "00001.tar", "00002.tar"]

    with tarfile.open(tmp_path / "00001.tar") as tar:
        names = tar.getnames()
        assert names == [f"00000001{k}.{e}" for k in "0123" for e in ("jpg", "txt", "json")]
        meta = json.loads(tar.extractfile("000000012.json").read())  # type: ignore[union-attr]
        assert tar.extractfile("000000012.txt").read() == b"caption 6"  # type: ignore[union-attr]
        assert tar.extractfile("000000012.jpg").read() == jpeg(6)  # type: ignore[union-attr]
        assert all(m.mtime == 0 for m in tar.getmembers())
    assert meta == {
        "key": "000000012",
        "caption": "caption 6",
        "status": "success",
        "error_message": None,
        "width": 12,
        "height": 10,
        "original_width": 12,
        "original_height": 10,
        "sha256": hashlib.sha256(jpeg(6)).hexdigest(),
        "noise": "clean",
        "index": 6,
    }

    table = pq.read_table(tmp_path / "00002.parquet")
    assert table.schema.equals(PARQUET_SCHEMA)
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == ["000000020", "000000021"]
    assert rows[0]["caption"] == "caption 8" and rows[0]["status"] == "success" and rows[0]["width"] == 12
    assert json.loads(rows[1]["meta"]) == {"noise": "clean", "index": 9}
    stats = json.loads((tmp_path / "00002_stats.json").read_text())
    assert stats["count"] == stats["successes"] == 2 and stats["status_dict"] == {"success": 2}


def test_key_width_grows_only_past_nine_digits(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    with ShardWriter(tmp_path / "a", samples_per_shard=10000) as w:
        assert w.write(jpeg(0), "x", {}) == "000000000"
    with ShardWriter(tmp_path / "b", samples_per_shard=100000, start_shard=3) as w:
        assert w.write(jpeg(0), "x", {}) == "0000300000"
    with ShardWriter(tmp_path / "c", samples_per_shard=1, start_shard=7) as w:
        assert [w.write(jpeg(0), None, {}) for _ in range(2)] == ["000000007", "000000008"]
    with tarfile.open(tmp_path / "c" / "00008.tar") as tar:
        assert tar.getnames() == ["000000008.jpg", "000000008.json"]  # no text, no .txt


def test_exception_mid_shard_leaves_only_sealed_shards(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    with pytest.raises(RuntimeError, match="boom"), ShardWriter(tmp_path, samples_per_shard=3) as w:
        for i in range(5):  # shard 0 sealed after 3 samples, shard 1 half written
            w.write(jpeg(i), f"c{i}", {})
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.parquet", "00000.tar", "00000_stats.json"]


def test_partial_shard_is_never_under_its_final_name(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    w = ShardWriter(tmp_path, samples_per_shard=3)
    w.write(jpeg(0), "c", {})
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible == []  # a crash now (no __exit__) leaves only hidden temporaries
    assert not list(tmp_path.glob("*.tar"))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_and_rejects_bad_input(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    with ShardWriter(tmp_path, samples_per_shard=2) as w:
        w.write(jpeg(0), "c", {})
    before = (tmp_path / "00000.tar").read_bytes()
    with pytest.raises(FileExistsError, match="00000"), ShardWriter(tmp_path, samples_per_shard=2) as w:
        w.write(jpeg(1), "d", {})
    assert (tmp_path / "00000.tar").read_bytes() == before
    with pytest.raises(ValueError, match="000000000: image bytes"), ShardWriter(tmp_path / "x", 2) as w:
        w.write(b"not an image", "c", {})
    with pytest.raises(ValueError, match="samples_per_shard"):
        ShardWriter(tmp_path, samples_per_shard=0)
    with pytest.raises(ValueError, match="image_ext"):
        ShardWriter(tmp_path / "y", 2).write(jpeg(0), "c", {}, image_ext="gif")


def test_same_samples_same_bytes(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    for d in ("a", "b"):
        with ShardWriter(tmp_path / d, samples_per_shard=5) as w:
            for i in range(3):
                w.write(jpeg(i), f"c{i}", {"i": i})
    for name in ("00000.tar", "00000.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
