"""A small HTTP/1.1 load generator for the server (the load test and benchmarks/bench_serve.py).

`run_load(url, path, body, requests=2000, concurrency=32)`: `concurrency` clients, each on one
keep-alive connection, send POST requests until `requests` have been sent, and time each one.
Plain asyncio streams rather than an HTTP library: the generator shares the machine with the
server, and it should spend as little of it as it can.

A request counts as answered when a whole response came back; one whose connection failed
before any response (refused: the server is gone; reset or closed: the server closed an idle
connection as it shut down) is counted in `failed`, by kind, and its client reconnects.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, of 200 answers
    statuses: Counter[int] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)  # no response: by kind

    @property
    def ok(self) -> int:
        return self.statuses[200]

    def quantile(self, q: float) -> float:
        xs = sorted(self.latencies)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    @property
    def throughput(self) -> float:
        """200 answers per second over the whole run."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0


class _NoResponse(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep the connection) of one response; its body is read and dropped."""
    line = await reader.readline()
    if not line:
        raise _NoResponse("closed")
    status = int(line.split()[1])
    length, close = 0, False
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, not close


async def run_load(
    url: str,
    path: str,
    body: bytes,
    *,
    requests: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    on_answer: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send `requests` POSTs of the JSON `body` to url+path from `concurrency` clients.
    on_answer(n) is called after the n-th answer (the SIGTERM test uses it)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode()
    result = LoadResult()
    sent = 0

    async def client() -> None:
        nonlocal sent
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while sent < requests:
            sent += 1
            try:
                if conn is None:
                    try:
                        conn = await asyncio.open_connection(host, port)
                    except OSError as e:
                        raise _NoResponse("refused") from e
                reader, writer = conn
                started = time.perf_counter()
                try:
                    writer.write(head + body)
                    await writer.drain()
                    status, keep = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError) as e:
                    raise _NoResponse("reset") from e
                result.statuses[status] += 1
                if status == 200:
                    result.latencies.append(time.perf_counter() - started)
                if on_answer is not None:
                    on_answer(sum(result.statuses.values()))
                if not keep:
                    writer.close()
                    conn = None
            except _NoResponse as e:
                result.failed[e.kind] += 1
                if conn is not None:
                    conn[1].close()
                    conn = None
                if e.kind == "refused":
                    await asyncio.sleep(0.01)
        if conn is not None:
            conn[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def load(
    url: str,
    path: str,
    body: bytes,
    *,
    requests: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    on_answer: Callable[[int], None] | None = None,
) -> LoadResult:
    """run_load, from synchronous code."""
    return asyncio.run(
        run_load(url, path, body, requests=requests, concurrency=concurrency, headers=headers, on_answer=on_answer)
    )
