"""The OpenAI-compatible endpoint with a VQA model (a question gives an answer), /v1/vqa's two
modes, a different model as scorer, and remote images with --allow-remote-images (fetched from
a loopback HTTP server)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openblip.api import load

from .conftest import Server, data_url, png_bytes

# In-process results are compared with the server's exactly: one torch thread on both sides
# (the server runs with OMP_NUM_THREADS=1), so that no reduction is split differently.
pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMG = data_url(png_bytes(0))


@pytest.fixture(scope="module")
def server(start_server: Any, serve_models: dict[str, str]) -> Server:
    return start_server(
        "--model", serve_models["vqa"], "--scorer", serve_models["full"],
        "--allow-remote-images", "--max-body-mb", "0.1",
    )  # fmt: skip


@pytest.fixture(scope="module")
def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120)


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    """A loopback HTTP server: /a.png (an image), /big.png (past the body limit), else 404."""
    files = {"/a.png": png_bytes(0), "/big.png": png_bytes(5, size=(300, 300))}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _user(text: str | None, url: str = IMG) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url, "detail": "auto"}}]
    if text is not None:
        parts.insert(0, {"type": "text", "text": text})
    return [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": parts}]


def test_chat_answers_a_question(server: Server, client: httpx.Client, serve_models: dict[str, str]) -> None:
    openai = pytest.importorskip("openai")
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    model = serve_models["vqa"]
    out = oa.chat.completions.create(model=model, messages=_user("what is in the picture?"))  # type: ignore[arg-type]
    expected = load(model).answer(png_bytes(0), "what is in the picture?")[0].answer
    assert out.choices[0].message.content == expected
    assert out.choices[0].message.role == "assistant"
    assert 0.0 <= out.choices[0].model_extra["itm_score"] <= 1.0  # scored by the other model
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    beams = oa.chat.completions.create(model=model, messages=_user("what is it?"), n=3)  # type: ignore[arg-type]
    assert len(beams.choices) == 3 and [c.index for c in beams.choices] == [0, 1, 2]
    kw: dict[str, Any] = {"model": model, "messages": _user("what is it?"), "temperature": 1.5, "n": 2, "seed": 3}
    a, b = oa.chat.completions.create(**kw), oa.chat.completions.create(**kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    one = oa.chat.completions.create(model=model, messages=_user("what is it?"), max_tokens=1)  # type: ignore[arg-type]
    assert one.usage.completion_tokens <= 1


def test_chat_without_a_question_on_a_vqa_model(client: httpx.Client, serve_models: dict[str, str]) -> None:
    r = client.post("/v1/chat/completions", json={"model": serve_models["vqa"], "messages": _user(None)})
    assert r.status_code == 400 and "add a text part" in r.json()["error"]["message"]


def test_vqa_generate_and_rank(client: httpx.Client, serve_models: dict[str, str]) -> None:
    pipe = load(serve_models["vqa"])
    r = client.post("/v1/vqa", json={"images": [IMG, data_url(png_bytes(1))], "question": "what color?"})
    assert r.status_code == 200, r.text
    got = [x["answer"] for x in r.json()["results"]]
    assert got == [a.answer for a in pipe.answer([png_bytes(0), png_bytes(1)], "what color?")]
    assert all(x["itm_score"] is not None for x in r.json()["results"])
    ranked = client.post(
        "/v1/vqa", json={"images": [IMG], "question": "what color?", "answers": ["red", "blue", "two"]}
    )
    assert ranked.status_code == 200, ranked.text
    want = pipe.answer(png_bytes(0), "what color?", candidates=["red", "blue", "two"])[0].answer
    assert ranked.json()["results"][0]["answer"] == want
    for body, words in [
        ({"images": [IMG], "question": "   "}, "empty"),
        ({"images": [IMG], "question": "why", "answers": [" "]}, "answers[0]"),
        ({"images": [IMG], "question": "why", "answers": []}, "answers"),
        ({"images": [IMG], "question": "why", "max_length": 1}, "max_length"),
    ]:
        r = client.post("/v1/vqa", json=body)
        assert r.status_code == 422 and words in r.json()["error"]["message"], r.text


def test_caption_and_match_need_what_the_model_has(client: httpx.Client) -> None:
    r = client.post("/v1/caption", json={"images": [IMG]})
    assert r.status_code == 400 and "VQA checkpoint" in r.json()["error"]["message"]
    # match runs on the scorer when the served model has no ITM head
    assert client.post("/v1/match", json={"images": [IMG], "texts": ["a dog"]}).status_code == 200
    caps = client.get("/v1/models").json()["data"][0]["capabilities"]
    assert caps == {"caption": False, "vqa": True, "match": True, "explain": True, "search": False, "scored": True}
    # and so does explain: the maps are of the scorer's ITM head
    r = client.post("/v1/explain", json={"images": [IMG], "text": "a dog"})
    assert r.status_code == 200 and r.json()["explained_by"].endswith("full"), r.text


def test_remote_images_when_allowed(client: httpx.Client, image_host: str) -> None:
    body = {"images": [f"{image_host}/a.png"], "question": "what is it?"}
    r = client.post("/v1/vqa", json=body)
    assert r.status_code == 200, r.text
    local = client.post("/v1/vqa", json={**body, "images": [IMG]})
    assert r.json()["results"][0]["answer"] == local.json()["results"][0]["answer"]
    missing = client.post("/v1/vqa", json={**body, "images": [f"{image_host}/nothing.png"]})
    assert missing.status_code == 400 and "could not fetch" in missing.json()["error"]["message"]
    big = client.post("/v1/vqa", json={**body, "images": [f"{image_host}/big.png"]})
    assert big.status_code == 413, big.text
