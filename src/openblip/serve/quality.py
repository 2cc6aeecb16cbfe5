"""Rolling quality signals of what the server returns, and drift against a reference window.

Every caption or answer is one Observation: its scorer ITM probability (with --scorer), its
length in words, whether it is empty or repeats a word back to back ("a dog dog on"), and the
scorer's ITC feature of its image. `summary()` reports the last N observations and the last
hour: ITM mean and quantiles, the share below the low-score threshold, errors by kind.

Drift compares the recent window with a reference window: the first `reference_size`
observations after start-up, or a reference saved earlier (GET /v1/quality/reference, e.g. the
server run over a validation set) and loaded with --reference FILE, or the server's own outputs
on a folder of images captioned at start-up (--reference DIR). Two statistics:

* ITM scores: the two-sample Kolmogorov-Smirnov statistic D, the largest gap between the two
  empirical distribution functions (0 = same distribution, 1 = disjoint), with its asymptotic
  p-value (Kolmogorov's distribution, as scipy.stats.ks_2samp's "asymp" method): a small
  p-value says the scores moved more than sampling noise explains.
* image embeddings: the cosine distance between the mean ITC feature of each window,
  1 - cos(mean_ref, mean_recent) (0 = same centre; grows as users send other kinds of images).
  Features are unit vectors, so the statistic is scale-free; it is compared with the same
  distance between two halves of the reference (`noise_floor`) to say what "large" means.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HOUR_S = 3600.0
MAX_KEPT = 50_000  # observations held at most: "the last hour" is the last hour of these
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
KS_EXPLAINED = (
    "two-sample Kolmogorov-Smirnov D: the largest gap between the empirical distribution functions of the "
    "reference and recent ITM scores (0 = same distribution, 1 = disjoint); p_value is its asymptotic "
    "probability under no change"
)
CENTROID_EXPLAINED = (
    "1 - cosine similarity of the mean ITC image feature of the reference and of the recent window (0 = same "
    "centre); noise_floor is the same distance between the two halves of the reference"
)


@dataclass(frozen=True)
class Observation:
    task: str  # "caption" or "answer"
    itm: float | None
    words: int
    empty: bool
    repeated: bool
    embedding: np.ndarray | None  # (E,) float32, unit norm
    at: float  # time.time()


def repeats_a_word(text: str) -> bool:
    """A word immediately repeated ("a dog dog"): the decoder's typical degenerate output."""
    words = text.split()
    return any(a == b for a, b in itertools.pairwise(words))


def observe(task: str, text: str, itm: float | None, embedding: np.ndarray | None) -> Observation:
    return Observation(task, itm, len(text.split()), not text.strip(), repeats_a_word(text), embedding, time.time())


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(D, asymptotic p-value) of the two-sample Kolmogorov-Smirnov test."""
    x, y = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / len(x)
    cdf_y = np.searchsorted(y, grid, side="right") / len(y)
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    n = len(x) * len(y) / (len(x) + len(y))
    return d, kolmogorov_sf(d * math.sqrt(n))


def kolmogorov_sf(t: float) -> float:
    """P(K > t) for Kolmogorov's distribution: 2 Σ (-1)^(k-1) exp(-2 k² t²)."""
    if t <= 0:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cos(mean(a), mean(b)) of two (N, E) sets of features."""
    ma, mb = a.mean(0), b.mean(0)
    denom = float(np.linalg.norm(ma) * np.linalg.norm(mb))
    return 1.0 - float(ma @ mb) / denom if denom > 0 else 0.0


class QualityMonitor:
    """Thread-safe: the app records from the event loop, /metrics and /v1/quality read."""

    def __init__(self, *, window: int, low_score: float, reference_size: int, reference_file: Path | None) -> None:
        self.window = window
        self.low_score = low_score
        self.reference_size = reference_size
        self._lock = threading.Lock()
        self._recent: deque[Observation] = deque()  # the last `window`, or the last hour if longer
        self._errors: deque[tuple[float, str]] = deque()
        self._ref_scores: list[float] = []
        self._ref_embeds: list[np.ndarray] = []
        self.reference_source = "start-up: the first outputs served"
        self.reference_frozen = False
        if reference_file is not None:
            self._load_reference(reference_file)

    # ---- recording ---------------------------------------------------------------------------------
    def record(self, obs: Observation) -> None:
        with self._lock:
            self._recent.append(obs)
            if not self.reference_frozen:
                if obs.itm is not None:
                    self._ref_scores.append(obs.itm)
                if obs.embedding is not None:
                    self._ref_embeds.append(obs.embedding)
                if max(len(self._ref_scores), len(self._ref_embeds)) >= self.reference_size:
                    self.reference_frozen = True
            self._trim(obs.at)

    def record_error(self, kind: str) -> None:
        now = time.time()
        with self._lock:
            self._errors.append((now, kind))
            while self._errors and self._errors[0][0] < now - HOUR_S:
                self._errors.popleft()

    def _trim(self, now: float) -> None:
        while len(self._recent) > self.window and self._recent[0].at < now - HOUR_S:
            self._recent.popleft()
        while len(self._recent) > max(self.window, MAX_KEPT):
            self._recent.popleft()

    # ---- reading -----------------------------------------------------------------------------------
    def low_score_share(self) -> float | None:
        with self._lock:
            scores = [o.itm for o in list(self._recent)[-self.window :] if o.itm is not None]
        return sum(s < self.low_score for s in scores) / len(scores) if scores else None

    def summary(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            self._trim(now)
            recent = list(self._recent)
            errors = Counter(kind for at, kind in self._errors if at >= now - HOUR_S)
            ref_scores, ref_embeds = list(self._ref_scores), list(self._ref_embeds)
            frozen = self.reference_frozen
        last_n = recent[-self.window :]
        last_hour = [o for o in recent if o.at >= now - HOUR_S]
        return {
            "low_score_threshold": self.low_score,
            "last_n": {"n": self.window, **_describe(last_n, self.low_score)},
            "last_hour": _describe(last_hour, self.low_score),
            "errors_last_hour": dict(errors),
            "drift": self._drift(last_n, ref_scores, ref_embeds, frozen),
        }

    def _drift(
        self, recent: list[Observation], ref_scores: list[float], ref_embeds: list[np.ndarray], frozen: bool
    ) -> dict[str, Any]:
        scores = [o.itm for o in recent if o.itm is not None]
        embeds = [o.embedding for o in recent if o.embedding is not None]
        out: dict[str, Any] = {
            "reference": {
                "source": self.reference_source,
                "itm_scores": len(ref_scores),
                "image_embeddings": len(ref_embeds),
                "complete": frozen,
            },
            "recent": {"itm_scores": len(scores), "image_embeddings": len(embeds)},
            "itm_score": None,
            "image_embedding": None,
        }
        if not frozen:  # until the reference is whole, a comparison would be with itself
            out["note"] = f"the reference fills with the first {self.reference_size} outputs; no drift until then"
            return out
        if ref_scores and scores:
            d, p = ks_2samp(ref_scores, scores)
            out["itm_score"] = {
                "statistic": "kolmogorov_smirnov_d",
                "value": d,
                "p_value": p,
                "reference_mean": float(np.mean(ref_scores)),
                "recent_mean": float(np.mean(scores)),
                "explanation": KS_EXPLAINED,
            }
        if ref_embeds and embeds:
            ref = np.stack(ref_embeds)
            half = len(ref) // 2
            floor = centroid_distance(ref[:half], ref[half:]) if half >= 1 else None
            out["image_embedding"] = {
                "statistic": "centroid_cosine_distance",
                "value": centroid_distance(ref, np.stack(embeds)),
                "noise_floor": floor,
                "explanation": CENTROID_EXPLAINED,
            }
        return out

    # ---- the reference as a file -------------------------------------------------------------------
    def reference(self) -> dict[str, Any]:
        """The reference window as JSON (what --reference loads)."""
        with self._lock:
            return {
                "format": "openblip-quality-reference/1",
                "complete": self.reference_frozen,
                "itm_scores": list(self._ref_scores),
                "image_embeddings": [e.tolist() for e in self._ref_embeds],
            }

    def _load_reference(self, path: Path) -> None:
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format") != "openblip-quality-reference/1":
                raise ValueError("not an openblip quality reference (format field)")
            scores = [float(s) for s in data["itm_scores"]]
            embeds = [np.asarray(e, dtype=np.float32) for e in data["image_embeddings"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"--reference {path}: {e}") from e
        if embeds and len({e.shape for e in embeds}) != 1:
            raise ValueError(f"--reference {path}: image embeddings of different sizes")
        try:
            self.set_reference(scores, embeds, f"file: {path}")
        except ValueError as e:
            raise ValueError(f"--reference {path}: {e}") from e

    def set_reference(self, scores: Sequence[float], embeds: Sequence[np.ndarray], source: str) -> None:
        """Fix the reference window (e.g. outputs on a validation set); nothing joins it later."""
        if not scores and not embeds:
            raise ValueError("the reference holds neither ITM scores nor image embeddings")
        with self._lock:
            self._ref_scores, self._ref_embeds = list(scores), list(embeds)
            self.reference_source = source
            self.reference_frozen = True


def _describe(obs: list[Observation], low: float) -> dict[str, Any]:
    scores = np.asarray([o.itm for o in obs if o.itm is not None], dtype=np.float64)
    n = len(obs)
    itm = None
    if len(scores):
        itm = {
            "mean": float(scores.mean()),
            **{f"p{round(q * 100):02d}": float(np.quantile(scores, q)) for q in _QUANTILES},
        }
    return {
        "outputs": n,
        "scored": len(scores),
        "itm": itm,
        "low_score_share": float((scores < low).mean()) if len(scores) else None,
        "empty_share": sum(o.empty for o in obs) / n if n else None,
        "repeated_word_share": sum(o.repeated for o in obs) / n if n else None,
        "mean_words": sum(o.words for o in obs) / n if n else None,
    }
