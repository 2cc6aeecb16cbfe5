"""A bounded load test on loopback: 2,000 caption requests from 32 concurrent clients against a
tiny model (with its own scorer): no errors, and batches form (mean batch size above 1). Then
SIGTERM in the middle of a second wave: the server stops taking connections, answers every
request it accepted and exits within seconds; every request either got its 200 or never got in
(its connection was refused or closed unanswered, so a client knows to retry elsewhere)."""

from __future__ import annotations

import json
import re
import signal
import time

import httpx
import pytest

from openblip.serve.loadgen import load

from .conftest import data_url, png_bytes, start

REQUESTS = 2000
CLIENTS = 32
BODY = json.dumps({"images": [data_url(png_bytes(0))], "num_beams": 1, "max_length": 8, "min_length": 0}).encode()


def _metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.mark.slow
def test_load_batches_without_errors_and_sigterm_loses_nothing(serve_models: dict[str, str]) -> None:
    server = start("--model", serve_models["full"], "--scorer", serve_models["full"], "--max-batch", "32",
                   "--max-wait-ms", "10", "--max-queue", "1024", "--shutdown-timeout", "20")  # fmt: skip
    try:
        first = load(server.url, "/v1/caption", BODY, requests=REQUESTS, concurrency=CLIENTS)
        assert first.statuses == {200: REQUESTS} and not first.failed, (first.statuses, first.failed)
        metrics = httpx.get(server.url + "/metrics", timeout=60).text
        batches = _metric(metrics, "openblip_batch_size_count")
        items = _metric(metrics, "openblip_batch_size_sum")
        assert items == REQUESTS
        assert items / batches > 1.0, f"mean batch size {items / batches}"
        assert _metric(metrics, "openblip_itm_score_count") == REQUESTS  # every caption scored

        sent_at: list[float] = []

        def sigterm_after_300(n: int) -> None:
            if n == 300 and not sent_at:
                server.process.send_signal(signal.SIGTERM)
                sent_at.append(time.monotonic())

        second = load(
            server.url, "/v1/caption", BODY, requests=REQUESTS, concurrency=CLIENTS, on_answer=sigterm_after_300
        )
        code = server.process.wait(60)
        exited_after = time.monotonic() - sent_at[0]
    finally:
        server.stop()
    assert set(second.statuses) <= {200}, second.statuses  # no 5xx: nothing accepted was dropped
    assert set(second.failed) <= {"refused", "reset", "closed"}
    assert second.ok + sum(second.failed.values()) == REQUESTS
    assert second.ok >= 300
    done = re.search(r"stopped: (\d+) requests accepted for the model, (\d+) answered", server.stderr)
    assert done is not None, server.stderr[-2000:]
    accepted, answered = int(done[1]), int(done[2])
    assert accepted == answered == REQUESTS + second.ok  # every accepted request reached its client
    assert exited_after < 20, exited_after
    assert code == 0, server.stderr[-2000:]


def test_load_result_quantiles() -> None:
    from openblip.serve.loadgen import LoadResult

    r = LoadResult(seconds=2.0, latencies=[0.1 * i for i in range(1, 11)])
    r.statuses[200] = 10
    assert r.quantile(0.5) == pytest.approx(0.6) and r.quantile(0.99) == pytest.approx(1.0)
    assert r.throughput == 5.0
