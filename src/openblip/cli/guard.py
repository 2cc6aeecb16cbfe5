"""A model call that fails on one batch does not end the run (the project's rule: a batch job
records the failure, goes on, and loses nothing already done).

Every inference command runs its per-batch model call through ModelGuard. A RuntimeError (which
torch.cuda.OutOfMemoryError is, as are the errors kernels raise) on a batch of several inputs
is retried one input at a time: out of memory usually passes at batch size 1 (the CUDA cache is
emptied first), and any other failure is narrowed down to the inputs that cause it. An input
that still fails gets a ModelFailure, which the command writes as that item's error record, so
the run ends with exit code 1. One warning is logged per run, not one per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from openblip.cli.common import Item

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ModelFailure:
    """The model raised on this input even on its own; `message` goes in its error record."""

    message: str


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _free_cache() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return f"model failed on this item: {text[:300]}"


class ModelGuard:
    """Runs per-batch model calls for one command run; see the module docstring."""

    def __init__(self) -> None:
        self._warned = False

    def run(self, inputs: Sequence[T], compute: Callable[[list[T]], Sequence[R]]) -> list[R | ModelFailure]:
        """`compute(inputs)` (one result per input, in order), or, when it raises RuntimeError,
        each input on its own; an input that fails alone gets a ModelFailure."""
        batch = list(inputs)
        if not batch:
            return []
        try:
            return list(compute(batch))
        except RuntimeError as e:
            self._warn(e, len(batch))
            if is_out_of_memory(e):
                _free_cache()
            if len(batch) == 1:
                return [ModelFailure(_describe(e))]
        return [self._alone(x, compute) for x in batch]

    def items(self, items: Sequence[Item], compute: Callable[[list[Item]], Sequence[R]]) -> list[R]:
        """`run` over the items without an error yet; an item the model fails on gets its
        `error` set. Returns the results of the items still without an error, in order."""
        good = [it for it in items if it.error is None]
        results: list[R] = []
        for it, r in zip(good, self.run(good, compute)):
            if isinstance(r, ModelFailure):
                it.error = f"{it.name}: {r.message}"
            else:
                results.append(r)
        return results

    def _alone(self, x: T, compute: Callable[[list[T]], Sequence[R]]) -> R | ModelFailure:
        try:
            return compute([x])[0]
        except RuntimeError as e:
            if is_out_of_memory(e):
                _free_cache()
            return ModelFailure(_describe(e))

    def _warn(self, error: RuntimeError, size: int) -> None:
        if self._warned:
            return
        self._warned = True
        retry = "; retrying its items one at a time" if size > 1 else ""
        log.warning("the model failed on a batch of %d (%s)%s; failed items get error records", size, error, retry)
