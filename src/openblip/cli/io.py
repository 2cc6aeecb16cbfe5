"""Inputs and outputs shared by the inference commands.

Inputs: arguments naming files or directories; directories are expanded recursively to their
files with an image extension (IMAGE_EXTENSIONS), sorted (hidden files and directories, names
starting with ".", are skipped); how many other files were skipped is said once on stderr, since
real folders hold sidecars (.txt, .json, .ogg) beside their images. With `all_files` (the
commands' --all-files) every file of a directory is an item. A file named on the command line is
always an item, whatever its extension: a non-image file becomes its own error record. A named pipe,
socket or device found in a directory is an item whose record says "not a regular file" (it is
never opened: reading a pipe nobody writes to would hang the run), and so is one named on the
command line (use "-" to read an image from a pipe). A subdirectory that cannot be read is an item
whose record names it, rather than vanishing. An argument that does not exist is kept as an item
too (its record says so). "-" is one image read from standard input. A path reached twice (a
directory given twice, "d" and "./d/x.png") is one item.

Outputs: one JSON object per item on stdout (JSON lines), or `--output FILE` whose extension
picks the format: .jsonl (streamed, flushed per record), .parquet or .csv (the command's
columns, in its fixed order, whether or not a record has them, e.g. "image,caption,error" for
caption; a field no column names follows, in first-seen order; in CSV, list values are
JSON-encoded). Those
two cannot be appended to, so every record is streamed as it is produced, flushed, to the
sidecar `FILE.partial.jsonl` (JSON lines as above), which is converted to FILE when the run ends
and then deleted: a run that is killed or crashes leaves the sidecar holding every record
finished before it died ("a batch job loses nothing already done").
Output is UTF-8. File names that are not valid UTF-8 (Python holds their bytes as lone
surrogates) are written as JSON \\udcXX escapes in JSON lines, which json.loads turns back into
the same name, and with U+FFFD in place of the bad bytes in Parquet and CSV.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from openblip.cli import UsageError

if TYPE_CHECKING:  # imported when a bar is made: `openblip --help` does not need it
    from tqdm import tqdm

Record = dict[str, Any]
OUTPUT_FORMATS = (".jsonl", ".parquet", ".csv")
STDIN = "-"  # an input argument naming standard input
PARTIAL_SUFFIX = ".partial.jsonl"  # FILE.parquet -> FILE.parquet.partial.jsonl while the run goes on
# What a directory expands to (lower-cased suffixes): the formats Pillow decodes without plugins.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff"}
    | {".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".avif"}
)


class UnusableInput(str):
    """An input path known to be unusable before it is opened (a named pipe or device, a
    directory that cannot be read): a str, so it travels with the other paths, and
    carries the `error` its record gets (common.load_items)."""

    error: str

    def __new__(cls, path: str, error: str) -> UnusableInput:
        self = super().__new__(cls, path)
        self.error = error
        return self


def partial_path(path: str) -> str:
    """The sidecar that holds the records of a .parquet/.csv output while the run goes on."""
    return path + PARTIAL_SUFFIX


def expand_inputs(args: Sequence[str], *, all_files: bool = False) -> list[str]:
    """Files named, and the image files (every file with `all_files`) found under the
    directories named, in argument order (each directory sorted); a path reached twice, however
    spelled ("d/x.png", "./d//x.png"), is kept once, as first spelled. A directory without
    usable files stays an item of its own, so that it gets an error record rather than
    vanishing. The count of files skipped for their extension is said once on stderr."""
    out: list[str] = []
    seen: set[str] = set()
    skipped = 0
    for arg in args:
        if os.path.isdir(arg):
            paths, others = _walk(arg, all_files)
            skipped += others
            if not paths:
                what = "files" if all_files or not others else f"image files ({others} other files skipped)"
                paths = [UnusableInput(arg, f"{arg}: directory holds no {what} (names starting with '.' are skipped)")]
        else:
            paths = [arg if arg == STDIN else _entry(arg)]
        for p in paths:
            key = p if p == STDIN else os.path.normpath(os.path.abspath(p))
            if key not in seen:
                seen.add(key)
                out.append(p)
    if skipped:
        print(
            f"openblip: skipped {skipped} file{'s' if skipped > 1 else ''} without an image extension in the "
            "directories given (--all-files takes every file)",
            file=sys.stderr,
        )
    return out


def is_image_name(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _walk(directory: str, all_files: bool) -> tuple[list[str], int]:
    """(files under `directory`, sorted; how many were left out for their extension). Symbolic
    links to directories are followed (a data set assembled from links is common), each real
    directory once, so a link cycle ends. Entries that are not regular files and
    subdirectories that cannot be read become UnusableInput."""
    found: list[str] = []
    visited: set[str] = set()
    skipped = 0

    def unreadable(e: OSError) -> None:  # os.walk skips such a directory silently without this
        name = os.fsdecode(e.filename) if e.filename is not None else directory
        found.append(UnusableInput(name, f"{name}: cannot read directory ({e.strerror or e})"))

    for root, dirs, files in os.walk(directory, onerror=unreadable, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # deterministic: which link is seen first
        visible = [f for f in files if not f.startswith(".")]
        wanted = visible if all_files else [f for f in visible if is_image_name(f)]
        skipped += len(visible) - len(wanted)
        found += [_entry(os.path.join(root, f)) for f in wanted]
    return sorted(found), skipped


def _entry(path: str) -> str:
    """`path`, or an UnusableInput when it is not a regular file (stat does not open it)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # a dangling link: reading it gives its own clear error
        return path
    if stat.S_ISREG(mode):
        return path
    kind = (
        "named pipe"
        if stat.S_ISFIFO(mode)
        else "socket"
        if stat.S_ISSOCK(mode)
        else "device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "special file"
    )
    return UnusableInput(path, f"{path}: not a regular file ({kind}); not opened")


def read_list(path: str, what: str) -> list[str]:
    """Strings from a file: a JSON list of strings, or one per line (blank lines skipped). A
    UTF-8 byte-order mark (as Windows editors write) is ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
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
    """Refuse an output that cannot be written before any work is done: an unknown extension,
    a directory, a folder that does not exist or cannot be written to. (Parquet and CSV are
    written when the run ends: finding out then would throw the whole run away.)"""
    if path is None:
        return
    if Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise UsageError(f"--output {path}: unknown extension; use one of {', '.join(OUTPUT_FORMATS)}")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise UsageError(f"--output {path}: is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--output {path}: no such directory {folder}")
    targets = [path] if Path(path).suffix.lower() == ".jsonl" else [path, partial_path(path)]
    if not os.access(folder, os.W_OK | os.X_OK) or any(
        os.path.exists(t) and not os.access(t, os.W_OK) for t in targets
    ):
        raise UsageError(f"--output {path}: not writable")


class RecordWriter:
    """Writes records as they come: JSON lines to stdout or a .jsonl file, or (for .parquet and
    .csv) to the sidecar partial_path(path), converted on close. `failed` says whether any
    record is an error record."""

    def __init__(self, path: str | None, columns: Sequence[str] = ()) -> None:
        check_output(path)
        self.path = path
        self.columns = tuple(columns)  # the CSV / Parquet columns, in this order
        self.suffix = Path(path).suffix.lower() if path else ".jsonl"
        self.failed = False
        self.count = 0
        self._partial = None if path is None or self.suffix == ".jsonl" else partial_path(path)
        target = self._partial or path
        try:
            self._stream: IO[str] = sys.stdout if target is None else open(target, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise UsageError(f"--output {path}: cannot write {target} ({e.strerror or e})") from e

    def write(self, record: Record) -> None:
        self.failed |= "error" in record
        self.count += 1
        line = json.dumps(record, ensure_ascii=False)
        try:
            line.encode("utf-8")  # lone surrogates (undecodable file names) are not UTF-8
            self._stream.write(line + "\n")
        except UnicodeEncodeError:  # ... nor can a stream in another encoding take every text
            self._stream.write(json.dumps(record) + "\n")  # ASCII with \\u escapes: the same JSON value
        self._stream.flush()  # a killed run keeps every record written so far

    def close(self) -> None:
        """Close the stream; for .parquet/.csv, convert the sidecar and delete it (it stays
        when the conversion fails, so that the records are not lost)."""
        if self._stream is sys.stdout or self._stream.closed:
            return
        self._stream.close()
        if self._partial is None or self.path is None:
            return
        rows = [{k: _valid_text(v) for k, v in r.items()} for r in read_partial(self._partial)]
        cols = _columns(rows, self.columns)
        if self.suffix == ".parquet":
            _write_parquet(self.path, rows, cols)
        else:
            _write_csv(self.path, rows, cols)
        os.remove(self._partial)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def read_partial(path: str) -> list[Record]:
    """The records in a sidecar (or any JSON-lines output); a last line cut short by a kill is
    dropped."""
    rows: list[Record] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # the process died while writing this line
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _valid_text(value: Any) -> Any:
    """`value` with strings made valid UTF-8 (lone surrogates, from undecodable file names,
    become U+FFFD): Parquet and CSV cannot hold them."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return value
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    return value


def _columns(rows: Sequence[Record], declared: Sequence[str]) -> list[str]:
    cols: dict[str, None] = dict.fromkeys(declared)
    for r in rows:
        for k in r:
            cols.setdefault(k, None)
    return list(cols)


def _write_parquet(path: str, rows: Sequence[Record], cols: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [r.get(c) for r in rows] for c in cols}) if cols else pa.table({})
    pq.write_table(table, path)


def _write_csv(path: str, rows: Sequence[Record], cols: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})


def progress_bar(total: int, desc: str) -> tqdm:
    """A tqdm bar on stderr (update it per batch), shown only when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty(), unit="item")
