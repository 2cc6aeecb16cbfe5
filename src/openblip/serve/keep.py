"""--keep-low-score DIR: the inputs and outputs of low-score requests, kept for a person to look at.

Each kept item is two files named by time and a counter: `<stamp>.<ext>` (the image as received)
and `<stamp>.json` (endpoint, request settings, outputs with their ITM scores). Bounded in count
and bytes: the oldest items go first when either bound would be passed. Files are written to a
temporary name and renamed, so a reader (or a killed server) never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


def image_extension(data: bytes) -> str:
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            return _EXT.get(im.format or "", "bin")
    except Exception:  # kept as received, whatever it is
        return "bin"


class LowScoreKeeper:
    def __init__(self, directory: Path, *, max_files: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._count = 0
        self._items: list[tuple[str, int]] = []  # (stem, bytes), oldest first
        for meta in sorted(self.directory.glob("*.json")):  # what a previous run kept counts too
            stem = meta.stem
            size = sum(p.stat().st_size for p in self.directory.glob(stem + ".*"))
            self._items.append((stem, size))
        known = {stem for stem, _ in self._items}
        for p in self.directory.iterdir():  # a write cut short by a kill: a .tmp, or an image without its record
            if p.is_file() and (p.suffix == ".tmp" or p.name.split(".")[0] not in known):
                p.unlink(missing_ok=True)
        self._evict(0)

    @property
    def kept(self) -> int:
        return len(self._items)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._items)

    def keep(self, image: bytes, record: dict[str, Any]) -> Path | None:
        """Keep one image and its record; None when the item alone passes the byte bound."""
        meta = json.dumps(record, indent=1, default=str).encode()
        size = len(image) + len(meta)
        if size > self.max_bytes:
            log.warning("low-score item of %d bytes not kept: more than --keep-max-bytes", size)
            return None
        with self._lock:
            self._count += 1
            stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 1_000_000_000:09d}-{self._count:06d}"
            self._evict(size)
            image_path = self.directory / f"{stem}.{image_extension(image)}"
            _write(image_path, image)
            _write(self.directory / f"{stem}.json", meta)  # written last: its presence marks a whole item
            self._items.append((stem, size))
        return image_path

    def _evict(self, incoming: int) -> None:
        """Remove the oldest items until one more of `incoming` bytes fits both bounds."""
        need_files = 1 if incoming else 0
        while self._items and (
            len(self._items) + need_files > self.max_files or self.total_bytes + incoming > self.max_bytes
        ):
            stem, _ = self._items.pop(0)
            for p in self.directory.glob(stem + ".*"):
                p.unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
