"""The server's settings: one frozen dataclass, filled by `openblip serve` (cli/serve_cmd.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from openblip.limits import DEFAULT_MAX_PIXELS

MiB = 1 << 20


@dataclass(frozen=True)
class ServeConfig:
    model_id: str  # the name /v1/models and chat completions use (the --model argument)
    # every endpoint but /healthz needs `Authorization: Bearer KEY`; kept out of repr (and logs)
    api_key: str | None = field(default=None, repr=False)
    max_batch: int = 32  # images (or texts) per model call
    max_wait_ms: float = 10.0  # how long the first item of a batch waits for company
    max_queue: int = 256  # items waiting for the model; more answer 503 + Retry-After
    request_timeout_s: float = 60.0  # a request still waiting after this answers 504
    allow_remote_images: bool = False  # fetch http(s) image URLs (off: the server fetches nothing)
    max_body_bytes: int = 20 * MiB  # larger request bodies (and fetched images) answer 413
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images answer 413
    max_images: int = 16  # images per request
    max_texts: int = 64  # texts (match, embed) or labels (classify) per request
    low_score: float = 0.3  # ITM probability below which an output counts as low-score
    quality_window: int = 1000  # requests in the rolling window of /v1/quality
    reference_size: int = 200  # outputs that form the drift reference when none is loaded
    reference_file: Path | None = None  # a reference saved from GET /v1/quality/reference
    reference_images: tuple[Path, ...] = ()  # or: images captioned and scored at start-up
    keep_low_score: Path | None = None  # keep inputs/outputs of low-score requests here
    keep_max_files: int = 1000  # ... at most this many requests
    keep_max_bytes: int = 256 * MiB  # ... and this many bytes

    def __post_init__(self) -> None:
        positive = {
            "max_batch": self.max_batch,
            "max_queue": self.max_queue,
            "max_body_bytes": self.max_body_bytes,
            "max_pixels": self.max_pixels,
            "max_images": self.max_images,
            "max_texts": self.max_texts,
            "quality_window": self.quality_window,
            "reference_size": self.reference_size,
            "keep_max_files": self.keep_max_files,
            "keep_max_bytes": self.keep_max_bytes,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and request_timeout_s > 0")
        if not 0.0 <= self.low_score <= 1.0:
            raise ValueError(f"low_score must be in [0, 1], got {self.low_score}")
