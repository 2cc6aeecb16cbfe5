"""The web page, driven in headless Chromium over the DevTools protocol against a live server:
pick an image (the page's own file input, its change event, its fetch to /v1/caption), wait for
the caption, open its heat map, match texts and open one's heat map, search the index, read the
quality panel, take a screenshot and check what it shows."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import Server, data_url, png_bytes

websockets_sync = pytest.importorskip("websockets.sync.client")


class DevTools:
    """The least of the DevTools protocol: commands over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(websockets_sync.connect(ws_url, max_size=64 << 20, open_timeout=60))
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=120))
            if reply.get("id") == msg_id:
                assert "error" not in reply, reply["error"]
                return dict(reply.get("result", {}))

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module")
def server(start_server: Any, serve_models: dict[str, str], gallery: Path) -> Server:
    return start_server(
        "--model", serve_models["full"], "--scorer", serve_models["full"], "--index", str(gallery),
        "--reference", str(gallery.parent),  # its three images, captioned at start-up: drift from the first request
    )  # fmt: skip


@pytest.fixture(scope="module")
def page(browser: Any, server: Server) -> Iterator[DevTools]:
    profile = Path(tempfile.mkdtemp(prefix="openblip-chromium-"))
    proc = subprocess.Popen(
        browser.args(
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,1100", "about:blank"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        assert proc.stderr is not None
        for line in proc.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                port = int(m[1])
                break
        assert port is not None, "chromium printed no DevTools address"
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=60).json()
        tab = next(t for t in targets if t["type"] == "page")
        tools = DevTools(tab["webSocketDebuggerUrl"])
        tools.send("Page.enable")
        tools.send("Runtime.enable")
        tools.send("Page.navigate", url=server.url + "/")
        tools.wait_for(
            "document.readyState === 'complete' && document.getElementById('model').textContent.includes('scorer')"
        )
        yield tools
        tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        shutil.rmtree(profile, ignore_errors=True)


def test_upload_caption_match_quality_screenshot(page: DevTools, server: Server, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(0, size=(160, 120)))
    root = page.send("DOM.getDocument")["root"]["nodeId"]
    node = page.send("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    page.send("DOM.setFileInputFiles", nodeId=node, files=[str(photo)])  # fires the input's change event

    state = page.wait_for(
        "(s => s === 'done' || s === 'error' ? s : null)(document.getElementById('caption').dataset.state)"
    )
    assert state == "done", page.eval("document.getElementById('caption-error').textContent")
    shown = page.eval("document.getElementById('caption').textContent")
    score = page.eval("document.getElementById('itm-score').textContent")
    api = httpx.post(server.url + "/v1/caption", json={"images": [data_url(photo.read_bytes())]}, timeout=120)
    expected = api.json()["results"][0]
    assert shown == expected["caption"]  # what the page shows is what the API answers for the file
    assert score == f"{expected['itm_score']:.3f}"
    assert page.eval("document.getElementById('preview').naturalWidth") == 160

    # the caption's heat map (the model has ITM heads, so /v1/models lists explain)
    assert page.eval("document.getElementById('explain').hidden") is False
    page.eval("document.getElementById('explain-button').click()")
    state = page.wait_for(
        "(s => s === 'done' || s === 'error' ? s : null)(document.getElementById('heatmap').dataset.state)"
    )
    assert state == "done", page.eval("document.getElementById('explain-error').textContent")
    heat = page.eval("document.getElementById('heatmap').src")
    api_heat = httpx.post(
        server.url + "/v1/explain", json={"images": [data_url(photo.read_bytes())], "text": shown}, timeout=120
    ).json()["results"][0]
    assert heat == api_heat["heatmap"]  # the page shows the API's picture of the caption it shows
    assert page.eval("document.getElementById('heatmap').naturalWidth") == 512  # a 160x120 photo, longest side 512
    assert page.eval("document.getElementById('heatmap').naturalHeight") == 384
    words = page.eval("document.getElementById('explain-words').textContent")
    assert words.startswith(f"ITM {api_heat['itm_score']:.3f}") and api_heat["words"][0]["word"] in words

    page.eval("document.getElementById('texts').value = 'a dog on a beach\\na red car'")
    page.eval("document.querySelector('#match-form button').click()")
    page.wait_for("document.querySelectorAll('#match-table tbody tr').length === 2")
    rows = page.eval("[...document.querySelectorAll('#match-table tbody tr')].map(r => r.cells[0].textContent)")
    assert rows == ["a dog on a beach", "a red car"]
    page.eval("document.querySelector('#match-table tbody tr:nth-child(2) td').click()")  # a matched text's map
    page.wait_for("document.getElementById('explain-note').textContent.includes('a red car')")
    page.wait_for("document.getElementById('heatmap').dataset.state === 'done'")
    car = httpx.post(
        server.url + "/v1/explain", json={"images": [data_url(photo.read_bytes())], "text": "a red car"}, timeout=120
    ).json()["results"][0]["heatmap"]
    page.wait_for(f"document.getElementById('heatmap').src === {json.dumps(car)}")

    page.wait_for("/scored/.test(document.getElementById('q-outputs').textContent)")
    page.wait_for("/KS D/.test(document.getElementById('q-drift-itm').textContent)")
    assert "centroid distance" in page.eval("document.getElementById('q-drift-emb').textContent")
    reference = httpx.get(server.url + "/v1/quality", timeout=60).json()["drift"]["reference"]
    assert reference["source"].startswith("start-up: captions of 3 images") and reference["itm_scores"] == 3
    assert re.match(r"\d+ \(\d+ scored\)", page.eval("document.getElementById('q-outputs').textContent"))

    assert page.eval("document.getElementById('search-panel').hidden") is False  # an index is loaded
    page.eval("document.getElementById('query').value = 'a dog'")
    page.eval("document.querySelector('#search-form button').click()")
    page.wait_for("document.querySelectorAll('#hits li').length === 3")
    hits = page.eval("[...document.querySelectorAll('#hits li')].map(li => li.textContent)")
    assert all(re.search(r"g[0-2]\.png +\(score -?\d", h) for h in hits), hits

    shot = base64.b64decode(page.send("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "page.png").write_bytes(shot)
    image = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert image.shape[1] == 1280 and image.shape[0] >= 600
    # the uploaded photo is random noise: the screenshot holds a patch of it (the preview), which
    # no other part of the page (flat colours and text) has
    noisy = np.abs(np.diff(image.astype(int), axis=1)).sum(axis=2) > 60
    assert noisy.sum() > 0.5 * 160 * 120 * 0.5, "the preview is not on the screenshot"
