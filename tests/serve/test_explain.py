"""POST /v1/explain over real HTTP on loopback: the heat maps and word records equal the Python
API's (BlipPipeline.explain, tasks/heatmap.render), JSON and multipart, auth and limits as the
other endpoints, and its error paths (a layer that cannot be explained, a model without ITM
heads, a bad image, a text with nothing to explain)."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from openblip.api import load
from openblip.tasks.heatmap import OVERLAY_SIZE, display_size, png, render

from .conftest import Server, data_url, png_bytes

# In-process maps are compared with the server's: one torch thread on both sides
pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PHOTO = png_bytes(3, size=(60, 40))
TEXT = "a red ball, on the grass"


@pytest.fixture(scope="module")
def server(start_server: Any, serve_models: dict[str, str]) -> Server:
    return start_server("--model", serve_models["full"], "--api-key", KEY, "--max-images", "2", "--max-texts", "3")


@pytest.fixture(scope="module")
def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=AUTH, timeout=120)


def _decoded(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == status
    assert "Traceback" not in r.text
    return str(body["error"]["message"])


def test_listed_in_models(client: httpx.Client) -> None:
    assert client.get("/v1/models").json()["data"][0]["capabilities"]["explain"] is True


def test_explain_same_as_the_python_api(client: httpx.Client, serve_models: dict[str, str]) -> None:
    r = client.post("/v1/explain", json={"images": [data_url(PHOTO), data_url(png_bytes(4))], "text": TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == body["explained_by"] == serve_models["full"] and body["text"] == TEXT
    assert [x["index"] for x in body["results"]] == [0, 1]

    pipe = load(serve_models["full"])
    expected = pipe.explain([PHOTO], TEXT)[0]
    got = body["results"][0]
    assert got["layer"] == expected.layer == 0  # the middle layer of a 2-layer encoder, never the last
    # float32 maps and scores through JSON: the same arithmetic on both sides (one thread)
    assert got["itm_score"] == pytest.approx(expected.itm_score, abs=1e-6)
    assert [w["word"] for w in got["words"]] == ["a", "red", "ball", "on", "the", "grass"]
    for w, e in zip(got["words"], expected.words):
        assert w["mass"] == pytest.approx(e.mass, abs=1e-5)
        assert w["peak"] == (None if e.peak is None else list(e.peak))
    assert sum(w["mass"] for w in got["words"]) == pytest.approx(1.0, abs=1e-5)

    whole = _decoded(got["heatmap"])
    assert whole.size == display_size((60, 40), OVERLAY_SIZE)
    photo = Image.open(io.BytesIO(PHOTO)).convert("RGB")
    pictures = render(photo, expected)
    # the same map drawn the same way; PNG is lossless, so the pixels agree up to a map that
    # differs in its last float bits (one colour level at most)
    diff = np.abs(np.asarray(whole.convert("RGB"), int) - np.asarray(pictures.whole, int))
    assert diff.max() <= 1
    strip = _decoded(got["word_heatmaps"])
    assert strip.size == pictures.words.size
    assert len(png(pictures.whole)) > 0


def test_explain_multipart_with_layer(client: httpx.Client) -> None:
    r = client.post("/v1/explain", files=[("images", ("p.png", PHOTO, "image/png"))], data={"text": TEXT, "layer": "0"})
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    assert res["layer"] == 0 and len(res["words"]) == 6


def test_explain_goes_through_auth_and_limits(server: Server, client: httpx.Client) -> None:
    assert httpx.post(server.url + "/v1/explain", json={"images": [data_url(PHOTO)], "text": TEXT}).status_code == 401
    assert "at most 2" in error_of(client.post("/v1/explain", json={"images": [data_url(PHOTO)] * 3, "text": "a"}), 400)
    assert client.post("/v1/explain", json={"images": [data_url(PHOTO)], "text": TEXT}).status_code == 200
    metrics = client.get("/metrics").text  # its batches ran on the model thread, counted as the others'
    assert re.search(r'openblip_batch_size_count\{task="explain"\} [1-9]', metrics), metrics


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"layer": 1}, 422, "layer 1 cannot be explained"),  # the last of 2: its maps are zero
        ({"layer": 5000}, 422, "layer"),
        ({"layer": -1}, 422, "layer"),
        ({"text": "!!!"}, 422, "text"),
        ({"text": ""}, 422, "text"),
        ({"images": ["data:image/png;base64,AAAA"]}, 400, "images[0]"),
        ({"images": ["hello"]}, 400, "images[0]"),
        ({"texts": ["a"]}, 422, "texts: unknown field"),
    ],
)
def test_bad_explain_requests(client: httpx.Client, body: dict[str, Any], status: int, words: str) -> None:
    full = {"images": [data_url(PHOTO)], "text": TEXT, **body}
    assert words in error_of(client.post("/v1/explain", json=full), status)


def test_model_without_itm_heads(start_server: Any, serve_models: dict[str, str]) -> None:
    """A captioning model alone cannot explain: not listed (the page hides the heat map), 400."""
    server = start_server("--model", serve_models["caption"])
    caps = httpx.get(server.url + "/v1/models", timeout=60).json()["data"][0]["capabilities"]
    assert caps["explain"] is False
    r = httpx.post(server.url + "/v1/explain", json={"images": [data_url(PHOTO)], "text": TEXT}, timeout=120)
    assert "ITC/ITM heads" in error_of(r, 400)
