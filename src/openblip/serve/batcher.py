"""Dynamic micro-batching: items of concurrent requests that share a key (task and generation
settings) run through the model together.

One queue, one model thread. The loop takes the group whose oldest item waited longest, lets it
fill up to `max_batch` items for at most `max_wait_s` after that item arrived (not waiting at
all when it is full), and runs it on the model thread. While the model works, new items gather,
so under load batches fill without waiting. Items of other keys keep their place: each group is
served in the order its oldest item arrived, so no key starves.

The queue is bounded: `submit` raises QueueFull past `max_queue` waiting items (the app answers
503 with Retry-After). A caller that stops waiting (its timeout) cancels its future; an item
not yet started is then skipped. `stop` refuses new items, finishes those queued and returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RunBatch = Callable[[Any, list[Any]], Sequence[Any]]  # (key, items) -> one result per item
OnBatch = Callable[[Any, int, float], None]  # (key, batch size, seconds) after each batch


class QueueFull(Exception):
    """More items wait than the queue holds."""


class Stopped(Exception):
    """The batcher is shutting down and takes no new items."""


@dataclass
class _Job:
    item: Any
    future: asyncio.Future[Any]
    since: float = field(default_factory=time.monotonic)
    queued: bool = True  # counted in the queue's depth (False once taken, or given up)


class MicroBatcher:
    def __init__(
        self, run: RunBatch, *, max_batch: int, max_wait_s: float, max_queue: int, on_batch: OnBatch | None = None
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_s >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._groups: OrderedDict[Hashable, deque[_Job]] = OrderedDict()
        self._waiting = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # One thread: the model is not shared between threads, and torch uses its own threads inside.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="openblip-model")
        self.batches = 0
        self.items = 0

    @property
    def depth(self) -> int:
        """Items waiting (not yet on the model)."""
        return self._waiting

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="openblip-batcher")

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """Queue a request's items under `key` (all or none); their results, in order. Raises
        QueueFull or Stopped at once, or the exception the model raised for their batch."""
        if self._stopping or self._wake is None:
            raise Stopped("the server is shutting down")
        if self._waiting + len(items) > self.max_queue:
            raise QueueFull(f"{self._waiting} items are waiting (--max-queue {self.max_queue})")
        loop = asyncio.get_running_loop()
        jobs = [_Job(item, loop.create_future()) for item in items]
        self._groups.setdefault(key, deque()).extend(jobs)
        self._waiting += len(jobs)
        self._wake.set()
        try:
            return list(await asyncio.gather(*(j.future for j in jobs)))
        except BaseException:
            for j in jobs:  # the caller gave up (timeout, disconnect): skip what has not started
                j.future.cancel()
                if j.queued:  # it leaves the queue's count now, not when the loop reaches it
                    j.queued = False
                    self._waiting -= 1
            raise

    async def stop(self) -> None:
        """Take no new items; finish the queued ones; release the model thread."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def _oldest_group(self) -> Hashable:
        return min(self._groups, key=lambda k: self._groups[k][0].since)

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._drop_empty()
            if not self._groups:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            key = self._oldest_group()
            group = self._groups[key]
            deadline = group[0].since + self.max_wait_s
            while len(group) < self.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            jobs = self._take(group)
            if not jobs:
                continue
            started = time.monotonic()
            try:
                results = await loop.run_in_executor(self._executor, self._run, key, [j.item for j in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(jobs)}")
            except Exception as e:  # the model failed: every request of the batch hears it
                log.exception("batch of %d items (%r) failed", len(jobs), key)
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
                continue
            self.batches += 1
            self.items += len(jobs)
            if self._on_batch is not None:
                self._on_batch(key, len(jobs), time.monotonic() - started)
            for j, r in zip(jobs, results):
                if not j.future.done():
                    j.future.set_result(r)

    def _take(self, group: deque[_Job]) -> list[_Job]:
        """Up to max_batch live jobs from the front of `group` (cancelled ones are dropped)."""
        jobs: list[_Job] = []
        while group and len(jobs) < self.max_batch:
            job = group.popleft()
            if job.queued:
                job.queued = False
                self._waiting -= 1
                jobs.append(job)
        return jobs

    def _drop_empty(self) -> None:
        for key in [k for k, g in self._groups.items() if not g]:
            del self._groups[key]
