from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from openblip.data.formats import iter_samples
from openblip.data.shard_writer import ShardWriter


def test_dispatches_on_what_the_path_holds(tmp_path: Path, jpeg: Callable[..., bytes]) -> None:
    with ShardWriter(tmp_path / "shards", samples_per_shard=2) as w:
        keys = [w.write(jpeg(i), f"t{i}", {}) for i in range(3)]
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.jpg").write_bytes(jpeg(0))
    (tmp_path / "list.jsonl").write_text(json.dumps({"image": "folder/x.jpg", "caption": "x"}) + "\n")

    assert [s.key for s in iter_samples(tmp_path / "shards")] == keys
    assert [s.key for s in iter_samples(tmp_path / "shards" / "00001.tar")] == keys[2:]
    assert [s.key for s in iter_samples(tmp_path / "shards", worker=1, num_workers=2)] == keys[2:]
    assert [s.key for s in iter_samples(tmp_path / "folder")] == ["x"]
    assert [s.text for s in iter_samples(tmp_path / "list.jsonl", start=0)] == ["x"]
    with pytest.raises(ValueError, match=r"nothing\.txt"):
        iter_samples(tmp_path / "nothing.txt")
