"""Inputs and outputs shared by the inference commands.

Inputs: arguments naming files or directories; directories are expanded recursively to their
files, sorted (hidden files and directories, names starting with ".", are skipped). Every file
is an item: a non-image file becomes that item's error record, not a silent skip. An argument
that does not exist is kept as an item too (its record says so).

Outputs: one JSON object per item on stdout (JSON lines), or `--output FILE` whose extension
picks the format: .jsonl (streamed), .parquet or .csv (written when the run ends; columns are
the union of the records' fields in first-seen order; in CSV, list values are JSON-encoded).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from openblip.cli import UsageError

if TYPE_CHECKING:  # imported when a bar is made: `openblip --help` does not need it
    from tqdm import tqdm

Record = dict[str, Any]
OUTPUT_FORMATS = (".jsonl", ".parquet", ".csv")


def expand_inputs(args: Sequence[str]) -> list[str]:
    """Files named or found under the directories named, in argument order (each directory
    sorted); duplicates kept once. A directory without files stays an item of its own, so that
    it gets an error record rather than vanishing."""
    out: list[str] = []
    seen: set[str] = set()
    for arg in args:
        paths = (_walk(arg) or [arg]) if os.path.isdir(arg) else [arg]
        for p in paths:
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


def _walk(directory: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(found)


def read_list(path: str, what: str) -> list[str]:
    """Strings from a file: a JSON list of strings, or one per line (blank lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {what} file {path}: {e}") from e
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            raise UsageError(f"{path}: not a valid JSON list of {what} ({e})") from e
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise UsageError(f"{path}: expected a JSON list of strings")
        values = [x.strip() for x in items if x.strip()]
    else:
        values = [line.strip() for line in text.splitlines() if line.strip()]
    if not values:
        raise UsageError(f"{path}: no {what}")
    return values


# ---- output ---------------------------------------------------------------------------------------
def check_output(path: str | None) -> None:
    """Refuse an unknown output extension before any work is done."""
    if path is not None and Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise UsageError(f"--output {path}: unknown extension; use one of {', '.join(OUTPUT_FORMATS)}")


class RecordWriter:
    """Collects records; `failed` says whether any record is an error record."""

    def __init__(self, path: str | None) -> None:
        check_output(path)
        self.path = path
        self.suffix = Path(path).suffix.lower() if path else ".jsonl"
        self.failed = False
        self.count = 0
        self._rows: list[Record] = []
        self._stream: IO[str] | None = None
        if self.suffix == ".jsonl":
            self._stream = sys.stdout if path is None else open(path, "w", encoding="utf-8")  # noqa: SIM115

    def write(self, record: Record) -> None:
        self.failed |= "error" in record
        self.count += 1
        if self._stream is not None:
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._stream.flush()
        else:
            self._rows.append(record)

    def write_all(self, records: Iterable[Record]) -> None:
        for r in records:
            self.write(r)

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()
        elif self.path is not None and self.suffix == ".parquet":
            _write_parquet(self.path, self._rows)
        elif self.path is not None and self.suffix == ".csv":
            _write_csv(self.path, self._rows)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _columns(rows: Sequence[Record]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, None)
    return list(cols)


def _write_parquet(path: str, rows: Sequence[Record]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _columns(rows)
    table = pa.table({c: [r.get(c) for r in rows] for c in cols}) if cols else pa.table({})
    pq.write_table(table, path)


def _write_csv(path: str, rows: Sequence[Record]) -> None:
    cols = _columns(rows)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})


def progress_bar(total: int, desc: str) -> tqdm:
    """A tqdm bar on stderr (update it per batch), shown only when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty(), unit="item")
