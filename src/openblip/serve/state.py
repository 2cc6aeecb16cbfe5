"""What the endpoints share: settings, engine, batcher, quality monitor, metrics, low-score keeper,
and the helpers every task endpoint uses (parse a body, decode its images, queue its items,
record what came back)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from openblip.serve.batcher import MicroBatcher, QueueFull, Stopped
from openblip.serve.config import ServeConfig
from openblip.serve.engine import CaptionItem, CaptionKey, Engine, Generated
from openblip.serve.errors import ApiError, validation_message
from openblip.serve.images import UPLOAD, DecodedImage, ImageRules, decode_images
from openblip.serve.keep import LowScoreKeeper
from openblip.serve.metrics import Metrics
from openblip.serve.quality import QualityMonitor, observe
from openblip.tasks.caption import DEFAULT_PROMPT, caption_config

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_LIST_FIELDS = frozenset({"texts", "labels", "answers"})  # multipart: repeated fields
_FILE_FIELDS = ("image", "images")


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


class ServerState:
    def __init__(self, config: ServeConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.started = time.time()
        self.monitor = QualityMonitor(
            window=config.quality_window,
            low_score=config.low_score,
            reference_size=config.reference_size,
            reference_file=config.reference_file,
        )
        self.batcher = MicroBatcher(
            engine.run,
            max_batch=config.max_batch,
            max_wait_s=config.max_wait_ms / 1000,
            max_queue=config.max_queue,
            on_batch=self._on_batch,
        )
        self.metrics = Metrics(lambda: self.batcher.depth, self.monitor.low_score_share)
        self.keeper = (
            None
            if config.keep_low_score is None
            else LowScoreKeeper(config.keep_low_score, max_files=config.keep_max_files, max_bytes=config.keep_max_bytes)
        )
        self.rules = ImageRules(config.max_pixels, config.max_body_bytes, config.allow_remote_images)
        if config.reference_images:
            self._reference_from_images(config.reference_images)
        self.ready = False
        self.accepted = 0  # requests queued for the model
        self.answered = 0  # ... of which answered 200

    def _reference_from_images(self, paths: Sequence[Path]) -> None:
        """The drift reference from the served model's own captions of `paths` (a validation
        set), scored by the scorer; an image that cannot be read is skipped with a warning."""
        engine = self.engine
        key = CaptionKey(caption_config(), DEFAULT_PROMPT)
        scores: list[float] = []
        embeds: list[np.ndarray] = []
        items: list[CaptionItem] = []
        for path in paths:
            try:
                items.append(CaptionItem(engine.model.load_image(path), 0))
            except (OSError, ValueError) as e:
                log.warning("--reference: %s skipped (%s)", path, e)
        for lo in range(0, len(items), self.config.max_batch):
            for res in engine.run(key, items[lo : lo + self.config.max_batch]):
                best = res.outputs[0]
                if best.itm is not None:
                    scores.append(best.itm)
                if res.embedding is not None:
                    embeds.append(res.embedding.numpy())
        source = f"start-up: captions of {len(items)} images ({paths[0].parent if paths else ''})"
        self.monitor.set_reference(scores, embeds, source)
        log.info("drift reference: %d ITM scores, %d image embeddings", len(scores), len(embeds))

    def _on_batch(self, key: Any, size: int, seconds: float) -> None:
        task = type(key).__name__.removesuffix("Key").lower()
        self.metrics.batch_size.labels(task).observe(size)
        self.metrics.batch_seconds.labels(task).observe(seconds)

    def on_response(self, endpoint: str, status: int, seconds: float) -> None:
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            kind = {401: "unauthorized", 413: "too_large", 503: "overloaded", 504: "timeout"}.get(status)
            kind = kind or ("client_error" if status < 500 else "server_error")
            self.metrics.errors.labels(kind).inc()
            self.monitor.record_error(kind)

    # ---- request bodies ----------------------------------------------------------------------------
    async def parse(self, request: Request, model: type[M]) -> tuple[M, list[bytes] | None]:
        """The body as `model` (JSON, or multipart with files in `image`/`images`), and the
        uploaded files (None for JSON)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        uploads: list[bytes] | None = None
        if ctype in ("application/json", ""):
            raw = await request.body()
            if not raw.strip():
                raise ApiError(400, "empty request body: send a JSON object")
            try:
                data = json.loads(raw, parse_constant=_not_json)
            except (ValueError, UnicodeDecodeError) as e:  # also: NaN / Infinity, integers past 4300 digits
                raise ApiError(400, f"body is not valid JSON ({e})") from e
            except RecursionError as e:  # "[[[[..." deeper than the parser's stack
                raise ApiError(400, "body is not valid JSON (nested too deeply)") from e
            if not isinstance(data, dict):
                raise ApiError(422, f"body must be a JSON object, got {type(data).__name__}")
        elif ctype == "multipart/form-data":
            data, uploads = await self._form(request)
        else:
            raise ApiError(415, f"content type {ctype!r}: send application/json or multipart/form-data")
        try:
            return model.model_validate(data), uploads
        except ValidationError as e:
            raise ApiError(422, validation_message(list(e.errors()))) from e

    async def _form(self, request: Request) -> tuple[dict[str, Any], list[bytes]]:
        form = await request.form(max_files=self.config.max_images, max_fields=4 * self.config.max_texts + 64)
        data: dict[str, Any] = {}
        uploads: list[bytes] = []
        for name, value in form.multi_items():
            if name in _FILE_FIELDS:
                if isinstance(value, str):
                    raise ApiError(400, f"multipart field {name!r} must be a file upload, got text")
                uploads.append(await value.read())
                continue
            if not isinstance(value, str):
                raise ApiError(400, f"multipart field {name!r} must be text, got a file")
            if name in _LIST_FIELDS:
                data.setdefault(name, []).append(value)
            elif name in data:
                raise ApiError(422, f"multipart field {name!r} given twice")
            else:
                data[name] = value
        if uploads:
            data["images"] = [f"{UPLOAD}{i}" for i in range(len(uploads))]
        return data, uploads

    async def images(self, refs: Sequence[str], uploads: list[bytes] | None) -> list[DecodedImage]:
        if len(refs) > self.config.max_images:
            raise ApiError(400, f"{len(refs)} images in one request; at most {self.config.max_images} (--max-images)")
        return await run_in_threadpool(decode_images, refs, uploads, self.rules)

    def check_count(self, what: str, n: int) -> None:
        if n > self.config.max_texts:
            raise ApiError(400, f"{n} {what} in one request; at most {self.config.max_texts} (--max-texts)")

    # ---- the model -----------------------------------------------------------------------------------
    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        try:
            self.accepted += 1
            out = await asyncio.wait_for(self.batcher.submit(key, items), self.config.request_timeout_s)
        except QueueFull as e:
            self.accepted -= 1
            raise ApiError(503, f"server busy: {e}; retry shortly", {"Retry-After": "1"}) from e
        except Stopped as e:
            self.accepted -= 1
            raise ApiError(503, "the server is shutting down; retry on another replica", {"Retry-After": "1"}) from e
        except asyncio.TimeoutError as e:
            raise ApiError(504, f"not answered within {self.config.request_timeout_s:g} s (--request-timeout)") from e
        self.answered += 1
        return out

    async def record(
        self, task: str, images: Sequence[DecodedImage], results: Sequence[Generated], request: dict[str, Any]
    ) -> None:
        """Quality signals of generated outputs; low-score inputs to --keep-low-score."""
        low = self.config.low_score
        for image, res in zip(images, results):
            embedding = None if res.embedding is None else res.embedding.numpy()
            for out in res.outputs:
                obs = observe(task, out.text, out.itm, embedding)
                self.monitor.record(obs)
                self.metrics.observe(obs, low)
            if self.keeper is not None and any(o.itm is not None and o.itm < low for o in res.outputs):
                record = {
                    "task": task,
                    "request": request,
                    "outputs": [{"text": o.text, "score": o.score, "itm_score": o.itm} for o in res.outputs],
                    "low_score_threshold": low,
                }
                await run_in_threadpool(self.keeper.keep, image.data, record)
