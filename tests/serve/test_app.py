"""Every endpoint and error path over real HTTP on loopback, against one server started with an
API key, small limits, a scorer, an image index and --keep-low-score."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from openblip.api import load

from .conftest import Server, data_url, png_bytes

# In-process results are compared with the server's exactly: one torch thread on both sides
# (the server runs with OMP_NUM_THREADS=1), so that no reduction is split differently.
pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMIT_BYTES = 60_000  # --max-body-mb below
MAX_PIXELS = 10_000


@pytest.fixture(scope="module")
def keep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kept")


@pytest.fixture(scope="module")
def server(start_server: Any, serve_models: dict[str, str], keep_dir: Path, gallery: Path) -> Server:
    return start_server(
        "--model", serve_models["full"], "--scorer", serve_models["full"], "--api-key", KEY,
        "--index", str(gallery), "--max-images", "3", "--max-texts", "5",
        "--max-body-mb", str(LIMIT_BYTES / 2**20), "--max-pixels", str(MAX_PIXELS),
        "--reference-size", "4", "--low-score", "1.0",  # every output is "low": kept, counted
        "--keep-low-score", str(keep_dir), "--keep-max-files", "3",
    )  # fmt: skip


@pytest.fixture(scope="module")
def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=AUTH, timeout=120)


IMG = data_url(png_bytes(0))
IMG2 = data_url(png_bytes(1))


def error_of(r: httpx.Response, status: int) -> str:
    """The message of a JSON error answer, checked for shape and for the absence of a trace."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == status
    assert "Traceback" not in r.text and 'File "' not in r.text
    return str(body["error"]["message"])


# ---- the tasks ------------------------------------------------------------------------------------
def test_caption_json_with_itm_score(client: httpx.Client) -> None:
    r = client.post("/v1/caption", json={"images": [IMG, IMG2], "num_beams": 2, "num_captions": 2})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [0, 1]
    for x in results:
        assert len(x["captions"]) == 2 and x["caption"] == x["captions"][0]["text"]
        assert all(0.0 <= c["itm_score"] <= 1.0 for c in x["captions"])
        assert x["itm_score"] == x["captions"][0]["itm_score"]


def test_caption_same_as_the_python_api(client: httpx.Client, serve_models: dict[str, str]) -> None:
    """The server is a thin layer: its caption is openblip.load(...).caption's, batched or not."""
    expected = load(serve_models["full"]).caption([png_bytes(0)], num_beams=3)[0].caption
    r = client.post("/v1/caption", json={"images": [IMG]})
    assert r.json()["results"][0]["caption"] == expected


def test_caption_multipart_upload(client: httpx.Client) -> None:
    files = [("image", ("a.png", png_bytes(0), "image/png")), ("image", ("b.png", png_bytes(1), "image/png"))]
    r = client.post("/v1/caption", files=files, data={"num_beams": "3"})
    by_json = client.post("/v1/caption", json={"images": [IMG, IMG2]})
    assert r.status_code == 200, r.text
    assert [x["caption"] for x in r.json()["results"]] == [x["caption"] for x in by_json.json()["results"]]


def test_seeded_sampling_repeats(client: httpx.Client) -> None:
    body = {"images": [IMG], "sample": True, "seed": 7, "num_captions": 2}
    a, b = (client.post("/v1/caption", json=body).json()["results"][0]["captions"] for _ in range(2))
    assert [c["text"] for c in a] == [c["text"] for c in b]


def test_match(client: httpx.Client, serve_models: dict[str, str]) -> None:
    r = client.post("/v1/match", json={"images": [IMG], "texts": ["a dog", "a red car"]})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    expected = load(serve_models["full"]).match([png_bytes(0)], ["a dog", "a red car"])
    assert [x["text"] for x in res] == ["a dog", "a red car"]
    for got, want in zip(res, expected):
        assert got["itm_score"] == pytest.approx(want.itm_score, abs=1e-5)
        assert got["itc_score"] == pytest.approx(want.itc_score, abs=1e-5)


def test_embed(client: httpx.Client) -> None:
    r = client.post("/v1/embed", json={"images": [IMG], "texts": ["a dog", "a cat"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["image_embeddings"]) == 1 and len(body["text_embeddings"]) == 2
    assert all(len(e) == body["dim"] for e in body["image_embeddings"] + body["text_embeddings"])
    assert np.linalg.norm(body["text_embeddings"][0]) == pytest.approx(1.0, abs=1e-5)


def test_classify(client: httpx.Client) -> None:
    r = client.post("/v1/classify", json={"images": [IMG], "labels": ["dog", "cat", "car"], "top_k": 2})
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    assert len(res["labels"]) == 2 and res["label"] == res["labels"][0]["label"]
    assert res["labels"][0]["probability"] >= res["labels"][1]["probability"]


def test_search(client: httpx.Client, gallery: Path) -> None:
    r = client.post("/v1/search", json={"texts": ["a dog"], "k": 2, "rerank": 2})
    assert r.status_code == 200, r.text
    hits = r.json()["results"][0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2]
    assert all(Path(h["image"]).parent == gallery.parent and h["itm_score"] is not None for h in hits)
    assert "images search an index of texts" in error_of(client.post("/v1/search", json={"images": [IMG]}), 400)
    error_of(client.post("/v1/search", json={"texts": ["a"], "images": [IMG]}), 422)


def test_vqa_on_a_caption_model_says_why(client: httpx.Client) -> None:
    assert "VQA checkpoint" in error_of(client.post("/v1/vqa", json={"images": [IMG], "question": "what?"}), 400)


# ---- service endpoints ----------------------------------------------------------------------------
def test_service_endpoints(client: httpx.Client, server: Server) -> None:
    assert client.get("/readyz").json()["status"] == "ready"
    models = client.get("/v1/models").json()["data"]
    assert models[0]["capabilities"] == {
        "caption": True, "vqa": False, "match": True, "explain": True, "search": True, "scored": True,
    }  # fmt: skip
    spec = client.get("/openapi.json").json()
    assert {"/v1/caption", "/v1/chat/completions", "/v1/search"} <= set(spec["paths"])
    assert "CaptionRequest" in spec["components"]["schemas"]
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and 'id="caption"' in page.text


def test_metrics_after_traffic(client: httpx.Client) -> None:
    client.post("/v1/caption", json={"images": [IMG]})
    client.post("/v1/caption", json={"images": "nope"})
    text = client.get("/metrics").text
    assert 'openblip_requests_total{endpoint="/v1/caption",status="200"}' in text
    assert 'openblip_requests_total{endpoint="/v1/caption",status="422"}' in text
    for name in (
        'openblip_request_seconds_bucket{endpoint="/v1/caption"',
        'openblip_batch_size_count{task="caption"}',
        'openblip_itm_score_bucket{le="0.5",task="caption"}',
        'openblip_output_words_count{task="caption"}',
        "openblip_queue_depth ",
        "openblip_low_score_share 1.0",
        'openblip_low_score_total{task="caption"}',
        "openblip_empty_outputs_total",
        "openblip_repeated_word_outputs_total",
        'openblip_errors_total{kind="client_error"}',
    ):
        assert name in text, name


def test_quality_window_and_drift(client: httpx.Client) -> None:
    for seed in range(5):  # the reference (size 4) fills, then there is a recent window to compare
        client.post("/v1/caption", json={"images": [data_url(png_bytes(seed))]})
    q = client.get("/v1/quality").json()
    last = q["last_n"]
    assert last["scored"] >= 5 and 0.0 <= last["itm"]["p05"] <= last["itm"]["p50"] <= last["itm"]["p95"] <= 1.0
    assert last["low_score_share"] == 1.0 and q["low_score_threshold"] == 1.0
    assert q["errors_last_hour"]["client_error"] >= 1  # test_metrics_after_traffic's 422
    drift = q["drift"]
    assert drift["reference"]["complete"] and drift["reference"]["itm_scores"] == 4
    assert drift["itm_score"]["statistic"] == "kolmogorov_smirnov_d" and 0 <= drift["itm_score"]["value"] <= 1
    assert drift["image_embedding"]["statistic"] == "centroid_cosine_distance"
    assert "Kolmogorov" in drift["itm_score"]["explanation"]
    ref = client.get("/v1/quality/reference").json()
    assert ref["format"] == "openblip-quality-reference/1" and len(ref["itm_scores"]) == 4


def test_low_score_inputs_kept_within_bounds(client: httpx.Client, keep_dir: Path) -> None:
    for seed in range(5):
        client.post("/v1/caption", json={"images": [data_url(png_bytes(100 + seed))]})
    records = sorted(keep_dir.glob("*.json"))
    assert len(records) == 3  # --keep-max-files 3: the oldest went first
    kept = json.loads(records[-1].read_text())
    assert kept["task"] == "caption" and kept["outputs"][0]["itm_score"] < 1.0
    image = records[-1].with_suffix(".png")
    assert image.read_bytes() == png_bytes(104)  # the newest, as received
    assert not list(keep_dir.glob("*.tmp"))


# ---- security -------------------------------------------------------------------------------------
def test_api_key(server: Server) -> None:
    anon = httpx.Client(base_url=server.url, timeout=60)
    assert anon.get("/healthz").json() == {"status": "ok"}  # open
    for path in ("/v1/models", "/metrics", "/readyz", "/docs", "/openapi.json", "/v1/quality", "/"):
        r = anon.get(path)
        assert "API key" in error_of(r, 401), path
        assert "WWW-Authenticate" in r.headers
    assert anon.get("/").headers["WWW-Authenticate"].startswith("Basic")  # browsers prompt for the page
    error_of(anon.post("/v1/caption", json={"images": [IMG]}), 401)
    error_of(anon.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    error_of(anon.get("/v1/models", headers={"Authorization": KEY}), 401)  # no scheme
    error_of(anon.get("/v1/models", headers={"Authorization": f"Bearer {KEY}x"}), 401)
    basic = base64.b64encode(f"me:{KEY}".encode()).decode()
    assert anon.get("/v1/models", headers={"Authorization": f"Basic {basic}"}).status_code == 200


# ---- bad input: every kind answered with a JSON 4xx -----------------------------------------------
def _solid_png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


JPEG = png_bytes(3)
BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("not an image", {"images": [data_url(b"hello, not an image")]}, 400, "not an image"),
    ("corrupt", {"images": [data_url(JPEG[:30] + bytes(200))]}, 400, "images[0]"),
    ("truncated", {"images": [data_url(JPEG[: len(JPEG) // 2])]}, 400, "images[0]"),
    ("empty data", {"images": ["data:image/png;base64,"]}, 400, "empty"),
    ("bad base64", {"images": ["data:image/png;base64,@@@"]}, 400, "base64"),
    ("not base64 URL", {"images": ["data:image/png,abc"]}, 400, "base64"),
    ("plain string", {"images": ["hello"]}, 400, "expected a data URL"),
    ("remote refused", {"images": ["http://127.0.0.1:1/a.png"]}, 400, "--allow-remote-images"),
    ("too many pixels", {"images": [data_url(_solid_png(200))]}, 413, "too many pixels"),
    ("too many images", {"images": [IMG] * 4}, 400, "at most 3"),
    ("no images", {"images": []}, 422, "images"),
    ("images wrong type", {"images": "x"}, 422, "images"),
    ("image item wrong type", {"images": [1]}, 422, "images[0]"),
    ("unknown field", {"images": [IMG], "beams": 3}, 422, "beams: unknown field"),
    ("out of range", {"images": [IMG], "num_beams": 100}, 422, "num_beams"),
    ("bad top_p", {"images": [IMG], "top_p": 0}, 422, "top_p"),
    ("not a number", {"images": [IMG], "num_beams": "many"}, 422, "num_beams"),
    ("min over max", {"images": [IMG], "min_length": 9, "max_length": 6}, 422, "min_length"),
    ("prompt too long", {"images": [IMG], "prompt": "a b c d e f g", "max_length": 6}, 422, "prompt"),
    ("past positions", {"images": [IMG], "max_length": 500}, 422, "positions"),
]


@pytest.mark.parametrize(("body", "status", "words"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_bad_caption_requests(client: httpx.Client, body: dict[str, Any], status: int, words: str) -> None:
    assert words in error_of(client.post("/v1/caption", json=body), status)


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/match", {"images": [IMG], "texts": ["!!!"]}, "empty"),
        ("/v1/match", {"images": [IMG], "texts": ["a"] * 6}, "at most 5"),
        ("/v1/match", {"images": [IMG], "texts": [1]}, "texts[0]"),
        ("/v1/embed", {}, "images, texts"),
        ("/v1/classify", {"images": [IMG], "labels": ["dog"], "template": "no slot"}, "template"),
        ("/v1/classify", {"images": [IMG], "labels": ["..."]}, "label 0"),
        ("/v1/classify", {"images": [IMG], "labels": ["dog"], "top_k": 0}, "top_k"),
        ("/v1/search", {"texts": ["a"], "k": 0}, "k"),
    ],
)
def test_bad_task_requests(client: httpx.Client, path: str, body: dict[str, Any], words: str) -> None:
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500 and words in r.json()["error"]["message"]


def test_bad_http(client: httpx.Client) -> None:
    assert "not valid JSON" in error_of(
        client.post("/v1/caption", content=b"{bad", headers={"Content-Type": "application/json"}), 400
    )
    assert "empty request body" in error_of(client.post("/v1/caption", content=b""), 400)
    for raw, words in [
        (b'{"images": [], "temperature": NaN}', "NaN is not a JSON value"),
        (b'{"seed": 1' + b"0" * 5000 + b"}", "digits"),
        (b"[" * 50_000, "nested too deeply"),
        (b'{"images": ["x"], "prompt": "a \\ud83d b"}', "prompt"),  # a lone surrogate: not a string
    ]:
        r = client.post("/v1/caption", content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500 and words in error_of(r, r.status_code), r.text
    no_boundary = {"Content-Type": "multipart/form-data"}
    assert "boundary" in error_of(client.post("/v1/caption", content=b"x", headers=no_boundary), 400)
    assert "JSON object" in error_of(client.post("/v1/caption", json=[1, 2]), 422)
    assert "content type" in error_of(
        client.post("/v1/caption", content=b"x", headers={"Content-Type": "text/plain"}), 415
    )
    big = {"images": [IMG], "prompt": "x" * LIMIT_BYTES}
    assert "larger than the limit" in error_of(client.post("/v1/caption", json=big), 413)

    def chunks() -> Any:  # no Content-Length: the limit applies while the body streams
        for _ in range(10):
            yield b" " * 10_000

    assert "larger than the limit" in error_of(
        client.post("/v1/caption", content=chunks(), headers={"Content-Type": "application/json"}), 413
    )
    error_of(client.get("/v1/nothing"), 404)
    error_of(client.get("/v1/caption"), 405)
    files = {"image": ("a.txt", b"plain text", "text/plain")}
    assert "images[0]" in error_of(client.post("/v1/caption", files=files), 400)
    many = [("image", (f"{i}.png", png_bytes(i), "image/png")) for i in range(4)]
    error_of(client.post("/v1/caption", files=many), 400)
    assert "given twice" in error_of(client.post("/v1/caption", files=files, data={"num_beams": ["1", "2"]}), 422)


# ---- OpenAI-compatible chat, captioning (the VQA side: test_openai_compat.py) ----------------------
def _chat(client: httpx.Client, server: Server, **kw: Any) -> httpx.Response:
    content = [{"type": "image_url", "image_url": {"url": IMG}}]
    return client.post(
        "/v1/chat/completions",
        json={"model": _model_id(server), "messages": [{"role": "user", "content": content}], **kw},
    )


def _model_id(server: Server) -> str:
    return httpx.get(server.url + "/v1/models", headers=AUTH).json()["data"][0]["id"]


def test_chat_caption_with_the_openai_client(server: Server, client: httpx.Client) -> None:
    openai = pytest.importorskip("openai")
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    model = oa.models.list().data[0].id
    image = {"type": "image_url", "image_url": {"url": IMG}}
    out = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": [image]}])
    expected = client.post("/v1/caption", json={"images": [IMG]}).json()["results"][0]["caption"]
    assert out.choices[0].message.content == expected  # temperature 0 / omitted: the original's beam search
    assert out.choices[0].model_extra["itm_score"] is not None
    sampled = [
        oa.chat.completions.create(
            model=model, messages=[{"role": "user", "content": [image]}], n=3, temperature=0.9, top_p=0.8, seed=11
        )
        for _ in range(2)
    ]
    assert len(sampled[0].choices) == 3
    assert [c.message.content for c in sampled[0].choices] == [c.message.content for c in sampled[1].choices]
    short = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": [image]}], max_tokens=2)
    assert short.usage.completion_tokens <= 2 and short.choices[0].finish_reason == "length"
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="other", messages=[{"role": "user", "content": [image]}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_chat_bad_requests(client: httpx.Client, server: Server) -> None:
    assert "streaming" in error_of(_chat(client, server, stream=True), 400)
    assert "answers no questions" in error_of(
        client.post(
            "/v1/chat/completions",
            json={
                "model": _model_id(server),
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "why?"}, {"type": "image_url", "image_url": {"url": IMG}}],
                    }
                ],
            },
        ),
        400,
    )
    two = [{"type": "image_url", "image_url": {"url": IMG}}] * 2
    assert "exactly one image_url" in error_of(
        client.post(
            "/v1/chat/completions", json={"model": _model_id(server), "messages": [{"role": "user", "content": two}]}
        ),
        400,
    )
    assert "exactly one image_url" in error_of(
        client.post(
            "/v1/chat/completions", json={"model": _model_id(server), "messages": [{"role": "user", "content": "hi"}]}
        ),
        400,
    )
    assert "no user message" in error_of(
        client.post(
            "/v1/chat/completions", json={"model": _model_id(server), "messages": [{"role": "system", "content": "hi"}]}
        ),
        422,
    )
    error_of(_chat(client, server, n=0), 422)
    error_of(_chat(client, server, temperature=3), 422)
    error_of(_chat(client, server, max_tokens=0), 422)
    error_of(_chat(client, server, logit_bias={}), 422)
    error_of(
        client.post(
            "/v1/chat/completions",
            json={"model": _model_id(server), "messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]},
        ),
        422,
    )
