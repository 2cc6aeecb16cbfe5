"""Progress on stderr: a tqdm bar on a terminal, otherwise one plain line per metrics record."""

from __future__ import annotations

import io
import re

from openblip.train.progress import Progress, _duration


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_off_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(start=10, total=40, enabled=True, stream=out)
    progress.step()
    progress.report(11, 2.71828, 12.345)
    progress.close()
    line = out.getvalue()
    assert re.fullmatch(r"step 11/40 \(27%\) loss 2\.718 images/s 12\.3 ETA \d+s\n", line), line


def test_a_terminal_gets_the_bar_and_no_lines() -> None:
    out = _Terminal()
    progress = Progress(start=0, total=4, enabled=True, stream=out)
    progress.step()
    progress.report(1, 1.0, 1.0)
    progress.close()
    text = out.getvalue()
    assert "step 1/4" not in text and "1/4" in text and "loss=1.000" in text


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    progress = Progress(start=0, total=4, enabled=False, stream=out)
    progress.step()
    progress.report(1, 1.0, 1.0)
    progress.close()
    assert out.getvalue() == ""


def test_durations_read_as_a_person_would() -> None:
    assert [_duration(s) for s in (0.2, 59.4, 61, 3599, 3600 * 2 + 60 * 5)] == ["0s", "59s", "1m01s", "59m59s", "2h05m"]
