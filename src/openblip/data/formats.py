"""One entry point for every image-text source: `iter_samples(path)`.

- a directory holding `*.tar` files, or a `.tar` file: webdataset shards (`webdataset.iter_shards`);
- a `.jsonl` or `.parquet` file: a list of {image, caption} (`files.iter_image_list`);
- any other directory: a folder of images with sidecar .txt/.json (`files.iter_image_folder`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from openblip.data.files import iter_image_folder, iter_image_list
from openblip.data.sample import BadSample, OnError, Sample
from openblip.data.webdataset import iter_shards, list_shards

__all__ = [
    "BadSample",
    "OnError",
    "Sample",
    "iter_image_folder",
    "iter_image_list",
    "iter_samples",
    "iter_shards",
    "list_shards",
]


def iter_samples(
    path: str | Path,
    *,
    start: int = 0,
    worker: int = 0,
    num_workers: int = 1,
    verify_images: bool = False,
    on_error: OnError | None = None,
) -> Iterator[Sample]:
    """Samples of whatever `path` holds (see the module docstring); the options are the readers'."""
    p = Path(path)
    if (p.is_dir() and any(p.glob("*.tar"))) or (p.is_file() and p.suffix == ".tar"):
        return iter_shards(
            p, start=start, worker=worker, num_workers=num_workers, verify_images=verify_images, on_error=on_error
        )
    if p.is_file() and p.suffix in (".jsonl", ".parquet"):
        return iter_image_list(
            p, start=start, worker=worker, num_workers=num_workers, verify_images=verify_images, on_error=on_error
        )
    if p.is_dir():
        return iter_image_folder(
            p, start=start, worker=worker, num_workers=num_workers, verify_images=verify_images, on_error=on_error
        )
    raise ValueError(f"not a shard directory, .tar, .jsonl, .parquet or image folder: {p}")
