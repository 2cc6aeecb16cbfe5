"""The bounded queue (503 + Retry-After) and the per-request timeout (504), over real HTTP on
loopback: the app runs in-process under uvicorn with an engine whose model calls wait on a gate,
so that what is queued, running and late is exact."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from openblip.api import BlipPipeline, load
from openblip.checkpoint_io import save_pretrained
from openblip.model.blip import Blip
from openblip.tokenizer import Tokenizer

from .conftest import data_url, png_bytes

uvicorn = pytest.importorskip("uvicorn")
from openblip.serve.app import create_app  # noqa: E402
from openblip.serve.config import ServeConfig  # noqa: E402
from openblip.serve.engine import Engine  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BODY = {"images": [data_url(png_bytes(0))], "num_beams": 1, "max_length": 6}


class GatedEngine(Engine):
    """Every model call waits until `gate` is open."""

    def __init__(self, model: BlipPipeline) -> None:
        super().__init__(model, model)
        self.gate = threading.Event()
        self.calls = 0

    def run(self, key: Any, items: list[Any]) -> Any:
        self.calls += 1
        self.gate.wait(60)
        return super().run(key, items)


@pytest.fixture(scope="module")
def app_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_blip: Callable[[str, int], Blip]
) -> Iterator[tuple[str, GatedEngine]]:
    path = save_pretrained(tiny_blip("full", 0), Tokenizer.default(), tmp_path_factory.mktemp("gated") / "m")
    engine = GatedEngine(load(path))
    config = ServeConfig(model_id="m", max_batch=1, max_wait_ms=0, max_queue=2, request_timeout_s=5.0)
    server = uvicorn.Server(uvicorn.Config(create_app(config, engine), log_level="warning", lifespan="on"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", engine
    engine.gate.set()
    server.should_exit = True
    thread.join(30)


def test_queue_full_is_503_and_late_answers_are_504(app_server: tuple[str, GatedEngine]) -> None:
    url, engine = app_server
    engine.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(httpx.post, url + "/v1/caption", json=BODY, timeout=60)
        while engine.calls < 1:  # request 1 is on the model, held at the gate
            time.sleep(0.01)
        queued = [pool.submit(httpx.post, url + "/v1/caption", json=BODY, timeout=60) for _ in range(2)]
        while httpx.get(url + "/readyz").json()["queue_depth"] < 2:
            time.sleep(0.01)
        full = httpx.post(url + "/v1/caption", json=BODY, timeout=60)
        assert full.status_code == 503 and full.headers["Retry-After"] == "1"
        assert "--max-queue 2" in full.json()["error"]["message"]
        late = [f.result() for f in [running, *queued]]  # nobody answered within 5 s
    for r in late:
        assert r.status_code == 504 and "--request-timeout" in r.json()["error"]["message"]
    engine.gate.set()
    calls = engine.calls
    ok = httpx.post(url + "/v1/caption", json=BODY, timeout=60)
    assert ok.status_code == 200, ok.text
    assert engine.calls == calls + 1  # the two requests that gave up while queued never reached the model
    metrics = httpx.get(url + "/metrics").text
    assert 'openblip_errors_total{kind="overloaded"} 1.0' in metrics
    assert 'openblip_errors_total{kind="timeout"} 3.0' in metrics
