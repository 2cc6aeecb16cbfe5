"""Stream samples from webdataset tar shards (img2dataset's output, or `ShardWriter`'s).

A sample is the run of consecutive tar members sharing a key (`{key}.jpg`, `{key}.txt`,
`{key}.json`). Streaming, one shard open at a time; nothing is extracted to disk.

Splitting is by shard: worker w of W reads shards w, w+W, w+2W, ... of the sorted list (so W
should not exceed the number of shards; with DataLoader workers on several ranks use
worker = rank * workers_per_rank + worker_id). `start` skips that many samples of the worker's own
stream, to resume after them; skipped samples' image bytes are not read.

A bad sample (no image, unreadable json or txt, truncated member) or an unreadable shard is reported
through `on_error` and skipped; the stream goes on.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tarfile
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

from openblip.data.sample import (
    BadSample,
    OnError,
    Sample,
    check_split,
    image_problem,
    log_bad_sample,
    parse_json_object,
    text_from,
)
from openblip.data.shard_writer import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

Members = dict[str, tarfile.TarInfo]  # extension -> member


def list_shards(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Tar shards named by `paths`: a directory stands for its `*.tar` files (sorted), a file for itself."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(p.glob("*.tar")))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such shard or directory: {p}")
    return out


def _grouped(tar: tarfile.TarFile, source: str, report: OnError) -> Iterator[tuple[str, Members]]:
    key: str | None = None
    members: Members = {}
    it = iter(tar)
    while True:
        try:
            info = next(it)
        except StopIteration:
            break
        except (tarfile.TarError, OSError, EOFError) as e:
            report(BadSample(source, key, f"corrupt tar after this key, rest of shard skipped ({e})"))
            break
        base = posixpath.basename(info.name)
        if not info.isfile() or base.startswith("."):
            continue
        stem, _, ext = base.partition(".")
        member_key = posixpath.join(posixpath.dirname(info.name), stem)
        if member_key != key:
            if key is not None:
                yield key, members
            key, members = member_key, {}
        members[ext.lower()] = info
    if key is not None:
        yield key, members


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(info)
    if f is None:
        raise ValueError(f"{info.name} is not a regular file")
    data = f.read()
    if len(data) != info.size:
        raise EOFError(f"{info.name} truncated: {len(data)} of {info.size} bytes")
    return data


def _decode(
    tar: tarfile.TarFile, source: str, key: str, members: Members, read_image: bool, verify: bool
) -> Sample | BadSample:
    image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
    if image_ext is None:
        return BadSample(source, key, f"no image member (has: {', '.join(sorted(members)) or 'nothing'})")
    if members[image_ext].size == 0:
        return BadSample(source, key, "empty image")
    try:
        meta = parse_json_object(_read(tar, members["json"])) if "json" in members else {}
        text = text_from(_read(tar, members["txt"]) if "txt" in members else None, meta)
        image = _read(tar, members[image_ext]) if read_image else b""
    except (ValueError, tarfile.TarError, OSError, EOFError) as e:  # UnicodeDecodeError, JSONDecodeError too
        return BadSample(source, key, f"{type(e).__name__}: {e}")
    problem = image_problem(image, verify) if read_image else None
    return BadSample(source, key, problem) if problem else Sample(key, image, text, meta)


def _check_stats(shard: Path, groups: int, report: OnError) -> None:
    """img2dataset's `_stats.json` says how many samples the tar should hold; a shortfall means the
    tar was cut at a member boundary, which tarfile itself cannot notice."""
    stats = shard.with_name(shard.stem + "_stats.json")
    try:
        expected = json.loads(stats.read_text())["successes"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if isinstance(expected, int) and expected != groups:
        report(BadSample(str(shard), None, f"shard holds {groups} samples but {stats.name} says {expected}"))


def _shard_samples(shard: Path, skip: int, verify: bool, report: OnError) -> Generator[Sample, None, int]:
    """Samples of one shard after skipping `skip` good ones; returns how many are still to skip."""
    source = str(shard)
    try:
        tar = tarfile.open(shard, "r:")  # noqa: SIM115 (closed by the `with` below)
    except (tarfile.TarError, OSError) as e:
        report(BadSample(source, None, f"unreadable tar ({e})"))
        return skip
    groups = 0
    with tar:
        for key, members in _grouped(tar, source, report):
            groups += 1
            item = _decode(tar, source, key, members, read_image=skip == 0 or verify, verify=verify)
            if isinstance(item, BadSample):
                report(item)
            elif skip:
                skip -= 1
            else:
                yield item
    _check_stats(shard, groups, report)
    return skip


def iter_shards(
    paths: str | Path | Sequence[str | Path],
    *,
    start: int = 0,
    worker: int = 0,
    num_workers: int = 1,
    verify_images: bool = False,
    on_error: OnError | None = None,
) -> Iterator[Sample]:
    """Samples of this worker's shards, in order, after skipping the first `start` of them.

    `verify_images` decodes each image header with PIL to drop undecodable ones (slower);
    `on_error` receives every skipped sample (default: a logged warning).
    """
    check_split(worker, num_workers, start)
    shards = list_shards(paths)
    mine = shards[worker::num_workers]
    if not mine:
        log.warning("worker %d of %d has no shard (%d shards in all)", worker, num_workers, len(shards))
    return _samples(mine, start, verify_images, on_error or log_bad_sample)


def _samples(shards: list[Path], skip: int, verify: bool, report: OnError) -> Iterator[Sample]:
    for shard in shards:
        skip = yield from _shard_samples(shard, skip, verify, report)
