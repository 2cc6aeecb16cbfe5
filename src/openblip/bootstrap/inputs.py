"""What `openblip bootstrap INPUT...` reads: input shards, and each shard's samples in order.

An input names one or more shards:
- a directory holding `*.tar` files: each tar is a shard (img2dataset's output);
- a glob (`web/*.tar`) or a brace range (`web/{00000..00009}.tar`, `{a,b}.jsonl`), expanded in order;
- a `.tar` file (webdataset), a `.jsonl` or `.parquet` list of {image path or bytes, caption}: one shard;
- any other directory: an image folder with `.txt` / `.json` sidecars, one shard.
A shard's outputs are named after it (`00000.tar` -> NAME `00000`); inputs with the same stem
in different directories get their directory's name in front (`web1_00000`).

Every sample of a shard is one `RawSample`, the unusable ones included (with `error` set), so
that each gets its row; a failure of the shard itself (an unreadable or cut tar) is a shard error.
"""

from __future__ import annotations

import enum
import glob
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openblip.data.files import iter_image_folder, iter_image_list
from openblip.data.sample import BadSample, Sample
from openblip.data.webdataset import iter_shards

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
# Reader reports about a whole shard (data/webdataset.py), not about one sample.
_SHARD_PROBLEMS = ("unreadable tar", "corrupt tar", "shard holds")


class ShardKind(enum.Enum):
    TAR = "tar"
    LIST = "list"
    FOLDER = "folder"


@dataclass(frozen=True)
class InputShard:
    name: str  # the output files' stem: scores/NAME.parquet, shards/NAME.tar
    path: str
    kind: ShardKind


@dataclass
class RawSample:
    index: int  # position in its shard (error rows included): the row order of the outputs
    key: str
    image: bytes
    text: str | None
    meta: dict[str, Any]
    error: str | None  # why the sample cannot be used; None when it can (so far)


def expand_braces(pattern: str) -> list[str]:
    """`a{00..02}b` -> a00b a01b a02b (zero padding kept); `{x,y}` -> x y; nested and repeated
    groups expand left to right, as bash does."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body, head, tail = m.group(1), pattern[: m.start()], pattern[m.end() :]
    rng = _RANGE.match(body)
    if rng:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        width = len(rng.group(1)) if rng.group(1).startswith("0") else 0
        step = 1 if hi >= lo else -1
        parts = [f"{i:0{width}d}" for i in range(lo, hi + step, step)]
    elif "," in body:
        parts = body.split(",")
    else:  # "{x}" is no expansion in bash either
        return [head + "{" + body + "}" + t for t in expand_braces(tail)]
    return [e for p in parts for e in expand_braces(head + p + tail)]


def _shards_of(item: str) -> list[tuple[str, ShardKind]]:
    p = Path(item)
    if p.is_dir():
        tars = sorted(p.glob("*.tar"))
        if tars:
            return [(str(t), ShardKind.TAR) for t in tars]
        return [(str(p), ShardKind.FOLDER)]
    if p.is_file():
        if p.suffix == ".tar":
            return [(str(p), ShardKind.TAR)]
        if p.suffix in (".jsonl", ".parquet"):
            return [(str(p), ShardKind.LIST)]
        raise ValueError(f"{item}: not a .tar shard, .jsonl / .parquet list, shard directory or image folder")
    raise FileNotFoundError(f"{item}: no such file or directory")


def find_shards(inputs: Sequence[str]) -> list[InputShard]:
    """The shards the inputs name, in the inputs' order (a path named twice once). A pattern that
    matches nothing or a path that does not exist is an error naming it."""
    found: list[tuple[str, ShardKind]] = []
    for arg in inputs:
        for item in expand_braces(arg):
            if glob.has_magic(item):
                matches = sorted(glob.glob(item))
                if not matches:
                    raise FileNotFoundError(f"{item}: no file matches")
                for m in matches:
                    found.extend(_shards_of(m))
            else:
                found.extend(_shards_of(item))
    seen: set[str] = set()
    unique = []
    for path, kind in found:
        resolved = str(Path(path).resolve())
        if resolved not in seen:
            seen.add(resolved)
            unique.append((path, kind))
    if not unique:
        raise ValueError("no input shards")
    return [InputShard(name, path, kind) for name, (path, kind) in zip(_names(unique), unique)]


def _names(shards: list[tuple[str, ShardKind]]) -> list[str]:
    stems = [_stem(Path(p), k) for p, k in shards]
    counts = {s: stems.count(s) for s in stems}
    names = [f"{Path(p).resolve().parent.name}_{s}" if counts[s] > 1 else s for s, (p, _) in zip(stems, shards)]
    out, used = [], set()
    for name in names:
        unique, n = name, 1
        while unique in used:
            n += 1
            unique = f"{name}-{n}"
        used.add(unique)
        out.append(unique)
    return out


def _stem(p: Path, kind: ShardKind) -> str:
    stem = p.resolve().name if kind is ShardKind.FOLDER else p.stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".") or "shard"


def read_shard(shard: InputShard, shard_errors: list[str]) -> Iterator[RawSample]:
    """Every sample of the shard in order (error rows included); problems of the shard itself are
    appended to `shard_errors` (the readable part is still yielded)."""
    pending: list[BadSample] = []
    if shard.kind is ShardKind.TAR:
        samples = iter_shards(shard.path, on_error=pending.append)
    elif shard.kind is ShardKind.LIST:
        samples = iter_image_list(shard.path, on_error=pending.append)
    else:
        samples = iter_image_folder(shard.path, on_error=pending.append)
    index = 0

    def flush() -> Iterator[RawSample]:
        nonlocal index
        for bad in pending:
            if bad.reason.startswith(_SHARD_PROBLEMS):
                shard_errors.append(bad.reason if bad.key is None else f"{bad.reason} (last key {bad.key})")
                continue
            key = bad.key if bad.key is not None else Path(bad.source).name
            yield RawSample(index, key, b"", None, {}, bad.reason)
            index += 1
        pending.clear()

    for sample in samples:
        yield from flush()
        yield _raw(index, sample)
        index += 1
    yield from flush()


def _raw(index: int, sample: Sample) -> RawSample:
    error = "no text (no .txt sidecar and no caption in the json)" if sample.text is None else None
    return RawSample(index, sample.key, sample.image_bytes, sample.text, sample.meta, error)


# A row's error message -> its category in stats.json. Messages that start with what went wrong
# are matched by that start only: what follows names paths, tar members and texts, which may hold
# any word ("json", "empty", "truncated") and must not decide the category.
_REASON_PREFIXES = (
    ("model failed", "model failure"),
    ("no text", "missing text"),
    ("web text is empty after cleaning", "empty text"),
    ("unicodedecodeerror", "non-UTF-8 text"),
    ("bad sidecar (unicodedecodeerror", "non-UTF-8 text"),
    ("bad json", "bad json"),
    ("jsondecodeerror", "bad json"),
    ("valueerror: expected a json object", "bad json"),
    ("eoferror", "truncated image"),
    ("cannot read image", "missing image"),
    ("no image member", "missing image"),
    ("empty image", "empty image"),
    ("undecodable image", "corrupt image"),
    ("needs a path or bytes", "bad row"),
)
# An image that fails to load (openblip.image.ImageError: "LABEL: reason", the label being the
# sample's key) -> by words of the reason, which are openblip.image's own.
_IMAGE_REASONS = (
    ("too many pixels", "oversized image"),
    ("truncated", "truncated image"),
    ("no such file", "missing image"),
    ("unreadable path", "missing image"),
    ("empty", "empty image"),
    ("corrupt", "corrupt image"),
    ("not an image", "corrupt image"),
)


def error_reason(message: str, key: str | None = None) -> str:
    """The category of a row's error, for stats.json's `errors` counts. `key`: the sample's key,
    which an image error names first (so a key such as "json_01" decides nothing)."""
    m = message.lower()
    for prefix, reason in _REASON_PREFIXES:
        if m.startswith(prefix):
            return reason
    if key is not None and message.startswith(f"{key}: "):
        m = m[len(key) + 2 :]
    elif ": " in m:  # no key given: the label ends at the first ": " (a key holding one is cut short)
        m = m.split(": ", 1)[1]
    return next((reason for needle, reason in _IMAGE_REASONS if needle in m), "other")
