from __future__ import annotations

import logging

import pytest
import torch

from openblip.cli.common import Item
from openblip.cli.guard import ModelFailure, ModelGuard


def _doubler(calls: list[list[int]], *, oom_above: int = 0, bad: int | None = None):
    """compute: doubles each input; OOM for batches larger than `oom_above` (when set); a
    RuntimeError whenever `bad` is in the batch."""

    def compute(xs: list[int]) -> list[int]:
        calls.append(list(xs))
        if oom_above and len(xs) > oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if bad in xs:
            raise RuntimeError(f"kernel failed on {bad}\nsecond line")
        return [2 * x for x in xs]

    return compute


def test_a_batch_that_runs_out_of_memory_is_retried_one_at_a_time(caplog) -> None:
    calls: list[list[int]] = []
    guard = ModelGuard()
    with caplog.at_level(logging.WARNING, logger="openblip.cli.guard"):
        assert guard.run([1, 2, 3], _doubler(calls, oom_above=1)) == [2, 4, 6]
        assert guard.run([4, 5], _doubler(calls, oom_above=1)) == [8, 10]
    assert calls == [[1, 2, 3], [1], [2], [3], [4, 5], [4], [5]]
    assert len(caplog.records) == 1 and "retrying its items one at a time" in caplog.records[0].message


def test_an_input_that_fails_alone_gets_a_failure_and_the_others_their_results() -> None:
    calls: list[list[int]] = []
    got = ModelGuard().run([1, 2, 3], _doubler(calls, bad=2))
    assert got == [2, ModelFailure("model failed on this item: kernel failed on 2"), 6]
    oom = ModelGuard().run([7], _doubler([], oom_above=-1))  # out of memory even alone
    assert oom == [ModelFailure("model failed on this item: CUDA out of memory. Tried to allocate 2.00 GiB")]
    assert ModelGuard().run([], _doubler(calls)) == []


def test_other_errors_are_not_swallowed() -> None:
    def compute(xs: list[int]) -> list[int]:
        raise ValueError("a setting the model cannot honour")

    with pytest.raises(ValueError, match="cannot honour"):
        ModelGuard().run([1, 2], compute)


def test_items_get_the_failure_as_their_error() -> None:
    items = [Item("a.png"), Item("b.png", error="b.png: not an image"), Item("c.png"), Item("d.png")]

    def compute(batch: list[Item]) -> list[str]:
        if any(it.name == "c.png" for it in batch):
            raise RuntimeError("boom")
        return [it.name.upper() for it in batch]

    assert ModelGuard().items(items, compute) == ["A.PNG", "D.PNG"]
    assert [it.error for it in items] == [None, "b.png: not an image", "c.png: model failed on this item: boom", None]
