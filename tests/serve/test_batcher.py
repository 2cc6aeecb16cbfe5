"""MicroBatcher without HTTP: grouping by key, the size and wait bounds, the bounded queue,
cancelled items, failures reaching every caller of a batch, and stop draining the queue."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from openblip.serve.batcher import MicroBatcher, QueueFull, Stopped


class Recorder:
    """A model stand-in: records each batch (key, items); optionally holds the first batch
    until released, so that a test can queue items behind it."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[tuple[Any, list[Any]]] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, key: Any, items: list[Any]) -> list[Any]:
        self.release.wait(30)
        self.batches.append((key, list(items)))
        if key == "fail":
            raise RuntimeError("model failed")
        return [(key, x) for x in items]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_items_of_one_key_share_a_batch() -> None:
    rec = Recorder()

    async def main() -> list[Any]:
        b = MicroBatcher(rec, max_batch=8, max_wait_s=0.5, max_queue=100)
        b.start()
        out = await asyncio.gather(*(b.submit("k", [i]) for i in range(8)))
        await b.stop()
        return out

    out = run(main())
    assert out == [[("k", i)] for i in range(8)]
    assert [len(items) for _, items in rec.batches] == [8]  # full: ran without waiting out max_wait


def test_keys_never_mix_and_max_batch_bounds() -> None:
    rec = Recorder(hold=True)

    async def main() -> None:
        b = MicroBatcher(rec, max_batch=3, max_wait_s=0.0, max_queue=100)
        b.start()
        first = asyncio.ensure_future(b.submit("a", [0]))
        await asyncio.sleep(0.05)  # the first batch is on the model, held
        rest = [asyncio.ensure_future(b.submit(k, [i])) for i, k in enumerate("abababa")]
        await asyncio.sleep(0.05)
        rec.release.set()
        await asyncio.gather(first, *rest)
        await b.stop()

    run(main())
    keys = [k for k, _ in rec.batches]
    assert keys == ["a", "a", "b", "a"]  # the oldest group first; 4 a's make 3 + 1
    assert [items for _, items in rec.batches] == [[0], [0, 2, 4], [1, 3, 5], [6]]


def test_max_wait_bounds_the_wait_for_company() -> None:
    rec = Recorder()

    async def main() -> float:
        b = MicroBatcher(rec, max_batch=64, max_wait_s=0.2, max_queue=100)
        b.start()
        t = time.monotonic()
        await b.submit("k", [1])
        took = time.monotonic() - t
        await b.stop()
        return took

    took = run(main())
    assert took >= 0.2  # alone, the item waited max_wait for company, then ran
    assert rec.batches == [("k", [1])]


def test_queue_bound_refuses_past_max_queue() -> None:
    rec = Recorder(hold=True)

    async def main() -> None:
        b = MicroBatcher(rec, max_batch=1, max_wait_s=0.0, max_queue=3)
        b.start()
        running = asyncio.ensure_future(b.submit("k", [0]))
        await asyncio.sleep(0.05)  # on the model: no longer waiting
        waiting = [asyncio.ensure_future(b.submit("k", [i])) for i in (1, 2)]
        await asyncio.sleep(0)
        assert b.depth == 2
        with pytest.raises(QueueFull):
            await b.submit("k", [3, 4])  # a request's items go in all together or not at all
        third = asyncio.ensure_future(b.submit("k", [3]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await b.submit("k", [5])
        rec.release.set()
        await asyncio.gather(running, *waiting, third)
        await b.stop()

    run(main())
    assert [i for _, items in rec.batches for i in items] == [0, 1, 2, 3]


def test_cancelled_items_are_skipped() -> None:
    rec = Recorder(hold=True)

    async def main() -> None:
        b = MicroBatcher(rec, max_batch=4, max_wait_s=0.0, max_queue=10)
        b.start()
        first = asyncio.ensure_future(b.submit("k", [0]))
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.submit("k", [1]), 0.01)  # the caller's timeout
        kept = asyncio.ensure_future(b.submit("k", [2]))
        rec.release.set()
        await asyncio.gather(first, kept)
        await b.stop()

    run(main())
    assert [items for _, items in rec.batches] == [[0], [2]]


def test_a_failed_batch_fails_its_callers_only() -> None:
    rec = Recorder()

    async def main() -> None:
        b = MicroBatcher(rec, max_batch=4, max_wait_s=0.01, max_queue=10)
        b.start()
        bad = await asyncio.gather(b.submit("fail", [1]), b.submit("fail", [2]), return_exceptions=True)
        assert all(isinstance(e, RuntimeError) for e in bad)
        assert await b.submit("ok", [3]) == [("ok", 3)]  # the loop goes on
        await b.stop()

    run(main())


def test_stop_finishes_queued_items_then_refuses() -> None:
    rec = Recorder(hold=True)

    async def main() -> None:
        b = MicroBatcher(rec, max_batch=2, max_wait_s=0.0, max_queue=10)
        b.start()
        queued = [asyncio.ensure_future(b.submit("k", [i])) for i in range(5)]
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(b.stop())
        await asyncio.sleep(0)
        with pytest.raises(Stopped):
            await b.submit("k", [9])
        rec.release.set()
        assert [r for q in await asyncio.gather(*queued) for r in q] == [("k", i) for i in range(5)]
        await stopping

    run(main())
    assert b_items(rec) == list(range(5))


def b_items(rec: Recorder) -> list[Any]:
    return [i for _, items in rec.batches for i in items]
