"""The FastAPI application: `create_app(config, engine)`.

Endpoints: the tasks (routes.py), OpenAI's chat completions and models (openai_compat.py),
/healthz (alive; no key needed), /readyz (the model is loaded and the server takes work),
/metrics (Prometheus text), /v1/quality (rolling quality and drift), /v1/quality/reference
(the drift reference, to save and load with --reference), / (the web page), /docs (OpenAPI).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from openblip.serve import openai_compat, routes
from openblip.serve.config import ServeConfig
from openblip.serve.engine import Engine
from openblip.serve.errors import error_response, install_handlers
from openblip.serve.metrics import CONTENT_TYPE
from openblip.serve.schemas import REQUEST_MODELS
from openblip.serve.security import BodyTooLarge, Guard
from openblip.serve.state import ServerState

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def create_app(config: ServeConfig, engine: Engine) -> FastAPI:
    state = ServerState(config, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        state.ready = True
        log.info("ready: %s", config.model_id)
        try:
            yield
        finally:
            # uvicorn calls this after in-flight requests are answered (or its grace period ends)
            state.ready = False
            await state.batcher.stop()
            log.warning(
                "stopped: %d requests accepted for the model, %d answered, %d batches",
                state.accepted,
                state.answered,
                state.batcher.batches,
            )

    app = FastAPI(
        title="openblip",
        summary="BLIP over HTTP: caption, answer, match, embed, classify, search; OpenAI-compatible chat",
        version="1",
        lifespan=lifespan,
    )
    app.state.server = state
    install_handlers(app)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, str(exc))

    app.include_router(routes.router)
    app.include_router(openai_compat.router)

    @app.get("/healthz", summary="liveness (no API key needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="readiness: the model is loaded and work is taken")
    async def readyz() -> JSONResponse:
        if not state.ready:
            return error_response(503, "not ready (starting or shutting down)", {"Retry-After": "1"})
        return JSONResponse({"status": "ready", "model": config.model_id, "queue_depth": state.batcher.depth})

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/quality", summary="rolling quality of outputs and drift against the reference window")
    async def quality() -> dict[str, Any]:
        return state.monitor.summary()

    @app.get("/v1/quality/reference", summary="the drift reference window (load it with --reference)")
    async def quality_reference() -> dict[str, Any]:
        return state.monitor.reference()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _document_bodies(app)

    routers = (routes.router, openai_compat.router)
    paths = {getattr(r, "path", "") for r in [*app.routes, *(r for rt in routers for r in rt.routes)]} - {""}
    app.add_middleware(
        Guard,
        api_key=config.api_key,
        max_body_bytes=config.max_body_bytes,
        endpoints=paths,
        on_response=state.on_response,
    )
    return app


def _document_bodies(app: FastAPI) -> None:
    """The endpoints read their bodies themselves (JSON or multipart); their schemas are added
    to the OpenAPI document here, under components/schemas, for /docs and API testers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            _, top = models_json_schema(
                [(m, "validation") for m in REQUEST_MODELS], ref_template="#/components/schemas/{model}"
            )
            spec.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
