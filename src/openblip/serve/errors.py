"""Every error the server answers is JSON in one shape, OpenAI's, so that OpenAI clients show
the message::

    {"error": {"message": "image 0: not an image (...)", "type": "invalid_request_error", "code": 400}}

Client mistakes are 4xx with a message naming the item; anything else is a 500 whose body says
only that the server failed (the trace goes to the log, never to the client).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

# OpenAI's error types, by status
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An answer other than 200: status, a message for the client, optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "code": status}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    """("body", "images", 0) -> "images[0]"."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path"):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_message(errors: list[Any]) -> str:
    """pydantic's errors -> one line per field: "num_beams: Input should be less than or equal to 8"."""
    lines = []
    for e in errors[:10]:
        if e.get("type") == "json_invalid":
            lines.append(f"body is not valid JSON ({e.get('ctx', {}).get('error', 'parse error')})")
            continue
        where = _where(tuple(e.get("loc", ())))
        msg = "unknown field" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        return error_response(status, validation_message(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, detail, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal server error (the server's log has the details)")
