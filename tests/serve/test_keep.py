"""--keep-low-score: items kept whole, bounded in count and bytes, oldest first out, and a
restart after a kill cleans what a cut-short write left."""

from __future__ import annotations

import json
from pathlib import Path

from openblip.serve.keep import LowScoreKeeper

from .conftest import png_bytes


def test_bounded_in_count(tmp_path: Path) -> None:
    k = LowScoreKeeper(tmp_path, max_files=2, max_bytes=10**9)
    paths = [k.keep(png_bytes(i), {"i": i}) for i in range(4)]
    assert all(p is not None and p.suffix == ".png" for p in paths)
    records = sorted(tmp_path.glob("*.json"))
    assert [json.loads(p.read_text())["i"] for p in records] == [2, 3]
    assert sorted(tmp_path.glob("*.png")) == sorted(p for p in paths[2:] if p is not None)


def test_bounded_in_bytes(tmp_path: Path) -> None:
    one = len(png_bytes(0)) + 200
    k = LowScoreKeeper(tmp_path, max_files=100, max_bytes=int(2.5 * one))
    for i in range(5):
        k.keep(png_bytes(0), {"i": i})
    assert k.kept == 2 and k.total_bytes <= 2.5 * one
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == k.total_bytes
    assert k.keep(b"x" * (3 * one), {"i": "huge"}) is None  # larger than the bound alone: not kept
    assert k.kept == 2


def test_restart_counts_old_items_and_cleans_partial_writes(tmp_path: Path) -> None:
    k = LowScoreKeeper(tmp_path, max_files=3, max_bytes=10**9)
    for i in range(3):
        k.keep(png_bytes(i), {"i": i})
    (tmp_path / "20990101T000000-000000000-000009.png").write_bytes(b"image without its record")
    (tmp_path / "x.json.tmp").write_bytes(b"{")
    again = LowScoreKeeper(tmp_path, max_files=3, max_bytes=10**9)
    assert again.kept == 3 and not list(tmp_path.glob("*.tmp"))
    assert len(list(tmp_path.glob("*.png"))) == 3
    again.keep(png_bytes(9), {"i": 9})
    assert [json.loads(p.read_text())["i"] for p in sorted(tmp_path.glob("*.json"))] == [1, 2, 9]
