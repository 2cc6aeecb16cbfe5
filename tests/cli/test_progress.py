"""Stage progress on stderr when it is not a terminal: a line per stage at its end, and at most
one per interval while it runs."""

from __future__ import annotations

import io
import time

from openblip.cli.progress import StageProgress


def test_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = StageProgress("eval caption", interval=3600.0, stream=out)
    for done in (2, 4, 6):
        progress("caption", done, 6)
    progress("score", 1, 1)
    progress.close()
    lines = out.getvalue().splitlines()
    want = ["eval caption: caption 6/6 (100%)", "eval caption: score 1/1 (100%)"]
    assert [line.split(",")[0] for line in lines] == want


def test_interval_zero_reports_each_batch_with_time_left() -> None:
    out = io.StringIO()
    progress = StageProgress("eval", interval=0.0, stream=out)
    time.sleep(0.01)  # the first batch's work: the stage is counted from the construction
    for done in (1, 2, 4):
        progress("encode images", done, 4)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("eval: encode images 1/4 (25%), ")
    assert "left" in lines[0] and "left" not in lines[-1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal() -> None:
    out = _Terminal()
    progress = StageProgress("eval retrieval", stream=out)
    for done in (2, 4):
        progress("encode images", done, 4)
    progress("rerank texts per image", 1, 3)
    progress.close()
    text = out.getvalue()
    assert "\r" in text and "eval retrieval: encode images" in text and "4/4" in text
    assert "eval retrieval: rerank texts per image" in text and "1/3" in text
