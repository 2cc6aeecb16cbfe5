"""Samples from plain files: a folder of images with optional sidecars, or a jsonl/parquet list.

Folder: every image under `root` (recursive, sorted by relative path); `a/b.jpg` has key `a/b`,
its text in `a/b.txt` and its metadata in `a/b.json` when present.
List: one row per sample, `{"image": path, "caption": text, "key": ...}` (image paths relative
to the list's directory; in a parquet list the image may also be the encoded bytes); other fields
become the sample's meta.

There are no shards here, so the worker split is by row: row i belongs to worker i % num_workers.
`start` skips that many of the worker's good samples (resume).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from openblip.data.sample import (
    BadSample,
    OnError,
    Sample,
    check_split,
    image_problem,
    log_bad_sample,
    parse_json_object,
    skip,
    text_from,
)
from openblip.data.shard_writer import IMAGE_EXTENSIONS


def _load(
    key: str, image: Path, text: str | None, meta: dict[str, Any], verify: bool, source: str
) -> Sample | BadSample:
    try:
        data = image.read_bytes()
    except OSError as e:
        return BadSample(source, key, f"cannot read image {image} ({e})")
    problem = image_problem(data, verify)
    return BadSample(source, key, problem) if problem else Sample(key, data, text, meta)


def _folder_items(root: Path, worker: int, num_workers: int, verify: bool) -> Iterator[Sample | BadSample]:
    images = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    for i, path in enumerate(images):
        if i % num_workers != worker:
            continue
        key = path.relative_to(root).with_suffix("").as_posix()
        txt, js = path.with_suffix(".txt"), path.with_suffix(".json")
        try:
            meta = parse_json_object(js.read_bytes()) if js.is_file() else {}
            text = text_from(txt.read_bytes() if txt.is_file() else None, meta)
        except (OSError, ValueError) as e:
            yield BadSample(str(path), key, f"bad sidecar ({type(e).__name__}: {e})")
            continue
        yield _load(key, path, text, meta, verify, str(path))


def _list_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, row) or (row number, why the row is unreadable)."""
    if path.suffix == ".parquet":
        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield i, row
        return
    with path.open("rb") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                yield i, parse_json_object(line)
            except ValueError as e:
                yield i, f"bad json line ({e})"


def _list_items(
    path: Path, image_field: str, text_field: str, worker: int, num_workers: int, verify: bool
) -> Iterator[Sample | BadSample]:
    for i, row in _list_rows(path):
        if i % num_workers != worker:
            continue
        source = f"{path}:{i + 1}"
        if isinstance(row, str):
            yield BadSample(source, None, row)
            continue
        key = str(row.get("key", f"{i:09d}"))
        image = row.get(image_field)
        text = row.get(text_field)
        if not isinstance(image, str | bytes) or not (text is None or isinstance(text, str)):
            yield BadSample(source, key, f"needs a path or bytes {image_field!r} and a string or null {text_field!r}")
            continue
        meta = {k: v for k, v in row.items() if k not in (image_field, text_field, "key")}
        if isinstance(image, bytes):  # a parquet binary column: the encoded image itself
            problem = image_problem(image, verify)
            yield BadSample(source, key, problem) if problem else Sample(key, image, text, meta)
            continue
        yield _load(key, path.parent / image, text, meta, verify, source)


def _good(items: Iterator[Sample | BadSample], report: OnError) -> Iterator[Sample]:
    for item in items:
        if isinstance(item, BadSample):
            report(item)
        else:
            yield item


def iter_image_folder(
    root: str | Path,
    *,
    start: int = 0,
    worker: int = 0,
    num_workers: int = 1,
    verify_images: bool = False,
    on_error: OnError | None = None,
) -> Iterator[Sample]:
    check_split(worker, num_workers, start)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such image folder: {root}")
    items = _folder_items(root, worker, num_workers, verify_images)
    return skip(_good(items, on_error or log_bad_sample), start)


def iter_image_list(
    path: str | Path,
    *,
    image_field: str = "image",
    text_field: str = "caption",
    start: int = 0,
    worker: int = 0,
    num_workers: int = 1,
    verify_images: bool = False,
    on_error: OnError | None = None,
) -> Iterator[Sample]:
    """Samples of a `.jsonl` or `.parquet` list of {image path, caption}."""
    check_split(worker, num_workers, start)
    path = Path(path)
    if path.suffix not in (".jsonl", ".parquet"):
        raise ValueError(f"an image list must be .jsonl or .parquet: {path}")
    if not path.is_file():
        raise FileNotFoundError(f"no such image list: {path}")
    items = _list_items(path, image_field, text_field, worker, num_workers, verify_images)
    return skip(_good(items, on_error or log_bad_sample), start)
