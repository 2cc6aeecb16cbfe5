"""Files that appear whole or not at all: written under a hidden temporary name in the same
directory, fsynced, renamed over the final name, and the directory fsynced so that the rename
itself survives a power loss."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """fsync `tmp`, then rename it to `final` (replacing it) and fsync the directory."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_json(final: Path, value: Any) -> None:
    tmp = temp_path(final)
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    publish(tmp, final)


def remove_stale_temps(directory: Path) -> int:
    """Remove the temporary files a killed run left (`.NAME.PID.tmp`); returns how many."""
    n = 0
    if directory.is_dir():
        for p in directory.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
    return n
