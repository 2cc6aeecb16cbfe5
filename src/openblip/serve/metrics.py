"""Prometheus metrics of one server (its own registry, so that tests can run several apps).

Names (all prefixed `openblip_`): requests_total{endpoint,status}, request_seconds{endpoint},
batch_size{task}, batch_seconds{task}, queue_depth, and quality: itm_score{task} (caption /
answer ITM probabilities), low_score_total{task}, low_score_share (rolling window),
output_words{task}, empty_outputs_total{task}, repeated_word_outputs_total{task},
errors_total{kind}.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from openblip.serve.quality import Observation

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_SCORE = tuple(i / 10 for i in range(1, 11))
_WORDS = (0, 1, 2, 4, 6, 8, 10, 12, 16, 20, 30, 50)


class Metrics:
    def __init__(self, queue_depth: Callable[[], int], low_score_share: Callable[[], float | None]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "openblip_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "openblip_request_seconds", "request latency by endpoint", ["endpoint"], buckets=_LATENCY, registry=r
        )
        self.batch_size = Histogram(
            "openblip_batch_size", "items per model batch", ["task"], buckets=_BATCH, registry=r
        )
        self.batch_seconds = Histogram(
            "openblip_batch_seconds", "model time per batch", ["task"], buckets=_LATENCY, registry=r
        )
        self.itm = Histogram(
            "openblip_itm_score",
            "scorer ITM probability of each caption / answer",
            ["task"],
            buckets=_SCORE,
            registry=r,
        )
        self.low = Counter("openblip_low_score", "outputs below the low-score threshold", ["task"], registry=r)
        self.words = Histogram(
            "openblip_output_words", "words per caption / answer", ["task"], buckets=_WORDS, registry=r
        )
        self.empty = Counter("openblip_empty_outputs", "empty captions / answers", ["task"], registry=r)
        self.repeated = Counter(
            "openblip_repeated_word_outputs", "outputs repeating a word back to back", ["task"], registry=r
        )
        self.errors = Counter("openblip_errors", "error answers by kind", ["kind"], registry=r)
        Gauge("openblip_queue_depth", "items waiting for the model", registry=r).set_function(queue_depth)
        share = Gauge(
            "openblip_low_score_share",
            "share of low-score outputs in the rolling window (NaN: none scored)",
            registry=r,
        )
        share.set_function(lambda: _nan_if_none(low_score_share()))

    def observe(self, obs: Observation, low_score: float) -> None:
        if obs.itm is not None:
            self.itm.labels(obs.task).observe(obs.itm)
            if obs.itm < low_score:
                self.low.labels(obs.task).inc()
        self.words.labels(obs.task).observe(obs.words)
        if obs.empty:
            self.empty.labels(obs.task).inc()
        if obs.repeated:
            self.repeated.labels(obs.task).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value
