"""The outer ASGI layer of every request: the API key, the body-size limit, and the request
metrics (so that 401 and 413 answers are counted too).

With an API key, every path but /healthz needs `Authorization: Bearer KEY`; the key is compared
in constant time (hmac.compare_digest). Browsers cannot add a Bearer header when they open the
web page, so `Basic` credentials whose password is the key are accepted as well: opening the page
prompts for them (the 401 of the page asks for Basic), and the page's own requests reuse them.

The body limit is checked against Content-Length before anything is read, and again while the
body streams in (chunked uploads have no length): past the limit, reading raises BodyTooLarge,
which the app answers with 413.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable, Collection
from typing import Any

from openblip.serve.errors import error_body

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

OPEN_PATHS = frozenset({"/healthz"})
PAGE_PATHS = ("/", "/static/")  # where a 401 asks a browser for Basic credentials


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than the limit of {limit} bytes")
        self.limit = limit


def key_matches(header: str | None, key: str) -> bool:
    """`Bearer KEY`, or `Basic base64(user:KEY)` (any user), compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            _, _, value = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.encode("utf-8"), key.encode("utf-8"))


class Guard:
    def __init__(
        self,
        app: Callable[..., Any],
        *,
        api_key: str | None,
        max_body_bytes: int,
        endpoints: Collection[str],
        on_response: Callable[[str, int, float], None],
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.endpoints = frozenset(endpoints)
        self.on_response = on_response  # (endpoint, status, seconds)

    def _endpoint(self, path: str) -> str:
        """The metrics label: a known path, else "other" (unbounded label values would grow memory)."""
        if path in self.endpoints:
            return path
        return "/static" if path.startswith("/static/") else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        endpoint = self._endpoint(scope["path"])
        status = [500]

        async def send_counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refuse(scope)
            if refusal is not None:
                code, message, headers = refusal
                await _send_json(send_counted, code, error_body(code, message), headers)
                return
            await self.app(scope, self._limited(receive), send_counted)
        finally:
            self.on_response(endpoint, status[0], time.monotonic() - started)

    def _refuse(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        needs_key = self.api_key is not None and scope["path"] not in OPEN_PATHS
        if needs_key and not key_matches(headers.get("authorization"), self.api_key or ""):
            page = scope["path"] == "/" or scope["path"].startswith(PAGE_PATHS[1])
            challenge = 'Basic realm="openblip"' if page else 'Bearer realm="openblip"'
            return 401, "missing or wrong API key (send Authorization: Bearer KEY)", {"WWW-Authenticate": challenge}
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, f"Content-Length {length!r} is not a number", {}
            if size > self.max_body_bytes:
                return 413, f"request body of {size} bytes is larger than the limit of {self.max_body_bytes}", {}
        return None

    def _limited(self, receive: Receive) -> Receive:
        seen = [0]
        limit = self.max_body_bytes

        async def receive_limited() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise BodyTooLarge(limit)
            return message

        return receive_limited


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
