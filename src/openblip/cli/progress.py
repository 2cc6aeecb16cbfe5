"""Progress of a multi-stage job on stderr: a tqdm bar per stage on a terminal; otherwise (nohup,
CI, a log file) a line per stage at most every `interval` seconds and one when the stage ends,
with the rate and the time left, so that a redirected run is never silent for minutes."""

from __future__ import annotations

import sys
import time
from typing import IO, Any


class StageProgress:
    """`progress(stage, done, total)`, as evaluate/harness.py calls it after each batch."""

    def __init__(self, prefix: str, *, interval: float = 10.0, stream: IO[str] | None = None) -> None:
        self.prefix = prefix
        self.interval = interval
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self._stage: str | None = None
        self._bar: Any = None
        # A stage is first heard of after its first batch: it began when the previous call (or
        # the construction) happened, which is what its elapsed time and rate count from.
        self._mark = time.monotonic()
        self._start = self._last = self._mark

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._stage:
            self._close()
            self._stage, self._start, self._last = stage, self._mark, now
            if self.terminal:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=f"{self.prefix}: {stage}", file=self.stream, unit="item")
        self._mark = now
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._close()
            return
        if done >= total or now - self._last >= self.interval:
            self._last = now
            self.stream.write(self._line(stage, done, total, now - self._start) + "\n")
            self.stream.flush()

    def _line(self, stage: str, done: int, total: int, elapsed: float) -> str:
        pct = 100.0 * done / total if total else 100.0
        line = f"{self.prefix}: {stage} {done}/{total} ({pct:.0f}%), {elapsed:.1f} s"
        if 0 < done < total and elapsed > 0:
            line += f", about {elapsed * (total - done) / done:.0f} s left"
        return line

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close()
