"""What a training run reports while it runs: metrics.jsonl (every `log_every` steps) and progress
on stderr, a tqdm bar on a terminal, otherwise (nohup, CI, a log file) one line per metrics record:

    step 40/400 (10%) loss 3.214 images/s 18.2 ETA 5m12s
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


class Metrics:
    """metrics.jsonl in the run dir (rank 0), optionally echoed on stdout."""

    def __init__(self, path: Path | None, echo: bool) -> None:
        self.file: TextIO | None = path.open("a", encoding="utf-8") if path is not None else None
        self.echo = echo and path is not None

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        if self.echo:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Progress of steps `start`..`total` on `stream` (stderr), shown only when `enabled` (rank 0,
    run.progress). The ETA extrapolates the time per step of this process's steps so far."""

    def __init__(self, start: int, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.start, self.total = start, total
        self.began = time.monotonic()
        self.lines = enabled and not self.stream.isatty()
        self.bar = tqdm(total=total, initial=start, disable=not enabled or self.lines, file=self.stream, unit="step")

    def step(self) -> None:
        self.bar.update(1)

    def report(self, step: int, loss: float, images_per_s: float) -> None:
        """After a metrics record: the bar's postfix, or one line."""
        self.bar.set_postfix(loss=f"{loss:.3f}")
        if not self.lines:
            return
        done = step - self.start
        eta = (time.monotonic() - self.began) / done * (self.total - step) if done > 0 else 0.0
        line = (
            f"step {step}/{self.total} ({100 * step // max(self.total, 1)}%) loss {loss:.3f} "
            f"images/s {images_per_s:.1f} ETA {_duration(eta)}"
        )
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.bar.close()
