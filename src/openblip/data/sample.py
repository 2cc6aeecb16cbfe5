"""The unit every reader yields, the report of a sample it had to skip, and the shared
offset / worker-split logic of the readers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from PIL import Image

log = logging.getLogger(__name__)


class Sample(NamedTuple):
    key: str
    image_bytes: bytes  # encoded (jpeg/png/webp); decoding and validation belong to the image loader
    text: str | None  # the caption / alt-text; None when the source has none
    meta: dict[str, Any]  # the sample's json (scene graph, references, noise label, ...)


class BadSample(NamedTuple):
    """A sample (or a whole shard, key None) that a reader skipped, and why."""

    source: str  # shard, file or list-line the sample came from
    key: str | None
    reason: str


OnError = Callable[[BadSample], None]


def log_bad_sample(bad: BadSample) -> None:
    """The default `on_error`: a warning, so a bad sample never stops a stream."""
    log.warning("skipping %s key=%s: %s", bad.source, bad.key, bad.reason)


def check_split(worker: int, num_workers: int, start: int) -> None:
    if num_workers < 1 or not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} is outside 0..num_workers-1 (num_workers={num_workers})")
    if start < 0:
        raise ValueError(f"start offset must be >= 0, got {start}")


def skip(samples: Iterable[Sample], start: int) -> Iterator[Sample]:
    """Drop the first `start` samples: resume a stream after the `start` samples already consumed."""
    for i, sample in enumerate(samples):
        if i >= start:
            yield sample


def image_problem(data: bytes, verify: bool) -> str | None:
    """Why `data` is not a usable image, or None. Without `verify` only emptiness is checked."""
    if not data:
        return "empty image"
    if verify:
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except Exception as e:
            return f"undecodable image ({type(e).__name__}: {e})"
    return None


def parse_json_object(data: bytes) -> dict[str, Any]:
    """A sample's json: a UTF-8 JSON object, else ValueError."""
    value = json.loads(data.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def text_from(txt: bytes | None, meta: dict[str, Any]) -> str | None:
    """The sample's text: its .txt, else the json's "caption" (img2dataset writes both)."""
    if txt is not None:
        return txt.decode("utf-8")
    caption = meta.get("caption")
    return caption if isinstance(caption, str) else None
