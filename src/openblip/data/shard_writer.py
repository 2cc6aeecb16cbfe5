"""Write image-text samples as webdataset tar shards in img2dataset's layout.

Per shard `NNNNN`: `NNNNN.tar` holding `{key}.jpg`, `{key}.txt`, `{key}.json`; `NNNNN.parquet`
(one row per sample: key, caption, status, error_message, width, height, original_width,
original_height, sha256, and our metadata as a JSON string `meta`); `NNNNN_stats.json`.
Keys are img2dataset's: shard * 10**ceil(log10(samples_per_shard)) + index, zero-padded to 9 digits
(more for very large shards).

Each file is written under a hidden temporary name and renamed when the shard is complete, the tar
last: a shard named `NNNNN.tar` is always whole, and a crash or an exception leaves at most hidden
`.NNNNN.*.tmp` files, which no reader lists.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

log = logging.getLogger(__name__)

SHARD_DIGITS = 5  # img2dataset's shard names: 00000.tar
KEY_DIGITS = 9  # img2dataset's default keys: 5 shard digits + 4 sample digits
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")

PARQUET_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("caption", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("sha256", pa.string()),
        ("meta", pa.string()),
    ]
)


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class ShardWriter:
    """Append samples; every `samples_per_shard` samples a shard is sealed under its final name.

    Use as a context manager: a clean exit seals the last (partial) shard, an exception discards it.
    `start_shard` continues numbering after existing shards (an existing final name is an error,
    never overwritten).
    """

    def __init__(self, out_dir: str | Path, samples_per_shard: int = 10000, start_shard: int = 0) -> None:
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        if start_shard < 0:
            raise ValueError(f"start_shard must be >= 0, got {start_shard}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard = samples_per_shard
        self._stride = 10 ** math.ceil(math.log10(samples_per_shard))
        self._key_digits = max(KEY_DIGITS, SHARD_DIGITS + len(str(self._stride - 1)))
        self._shard = start_shard
        self._tar: tarfile.TarFile | None = None
        self._rows: list[dict[str, Any]] = []
        self._start_time = 0.0
        self.shards: list[Path] = []  # the tars sealed so far
        self.count = 0  # samples in sealed shards

    # -- paths ---------------------------------------------------------------------------
    def _name(self, shard: int) -> str:
        return f"{shard:0{SHARD_DIGITS}d}"

    def _paths(self, shard: int) -> dict[str, tuple[Path, Path]]:
        """suffix -> (temporary path, final path)."""
        name = self._name(shard)
        return {
            suffix: (self.out_dir / f".{name}{suffix}.tmp", self.out_dir / f"{name}{suffix}")
            for suffix in (".parquet", "_stats.json", ".tar")
        }

    # -- writing -------------------------------------------------------------------------
    def _open(self) -> tarfile.TarFile:
        paths = self._paths(self._shard)
        for _, final in paths.values():
            if final.exists():
                raise FileExistsError(f"shard file already exists, not overwriting: {final}")
        self._start_time = time.time()
        self._tar = tarfile.open(paths[".tar"][0], "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 (spans writes)
        return self._tar

    def _add(self, tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644  # mtime 0: same samples, same bytes
        tar.addfile(info, io.BytesIO(data))

    def write(self, image: bytes, text: str | None, meta: Mapping[str, Any], image_ext: str = "jpg") -> str:
        """Add one sample; returns its key. `meta` goes to `{key}.json` (our fields override any of
        img2dataset's that `meta` repeats, e.g. when re-writing samples read from a shard)."""
        if image_ext not in IMAGE_EXTENSIONS:
            raise ValueError(f"image_ext must be one of {IMAGE_EXTENSIONS}, got {image_ext!r}")
        index = len(self._rows)
        key = f"{self._shard * self._stride + index:0{self._key_digits}d}"
        try:
            with Image.open(io.BytesIO(image)) as im:
                width, height = im.size
        except Exception as e:
            raise ValueError(f"sample {key}: image bytes are not a readable image ({e})") from e
        tar = self._tar or self._open()
        record = {
            "key": key,
            "caption": text,
            "status": "success",
            "error_message": None,
            "width": width,
            "height": height,
            "original_width": width,
            "original_height": height,
            "sha256": hashlib.sha256(image).hexdigest(),
        }
        extra = {k: v for k, v in meta.items() if k not in record}
        self._add(tar, f"{key}.{image_ext}", image)
        if text is not None:
            self._add(tar, f"{key}.txt", text.encode("utf-8"))
        self._add(tar, f"{key}.json", json.dumps({**extra, **record}, sort_keys=True).encode("utf-8"))
        self._rows.append({**record, "meta": json.dumps(extra, sort_keys=True)})
        if len(self._rows) == self.samples_per_shard:
            self._seal()
        return key

    def _seal(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._tar = None
        paths = self._paths(self._shard)
        n = len(self._rows)
        table = pa.Table.from_pylist(self._rows, schema=PARQUET_SCHEMA)
        pq.write_table(table, paths[".parquet"][0])
        end = time.time()
        stats = {
            "count": n,
            "successes": n,
            "failed_to_download": 0,
            "failed_to_resize": 0,
            "duration": end - self._start_time,
            "start_time": self._start_time,
            "end_time": end,
            "status_dict": {"success": n},
        }
        paths["_stats.json"][0].write_text(json.dumps(stats, indent=4))
        for suffix in (".parquet", "_stats.json", ".tar"):  # the tar last: its final name means "complete"
            _fsync_replace(*paths[suffix])
        self.shards.append(paths[".tar"][1])
        self.count += n
        log.debug("sealed shard %s (%d samples)", paths[".tar"][1], n)
        self._rows = []
        self._shard += 1

    def abort(self) -> None:
        """Discard the shard being written (its temporary files); sealed shards stay."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        for tmp, _ in self._paths(self._shard).values():
            tmp.unlink(missing_ok=True)
        self._rows = []

    def close(self) -> None:
        """Seal the last, partial shard."""
        self._seal()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
