"""Property-based: schemathesis generates requests from the server's OpenAPI document (valid
and invalid bodies for every operation, both content types) and no answer may be a 5xx; every
error answer is the JSON error shape."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Server

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")
from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture(scope="module")
def server(start_server: Any, serve_models: dict[str, str]) -> Server:
    return start_server("--model", serve_models["full"], "--scorer", serve_models["full"], "--max-images", "2")


SETTINGS = hypothesis.settings(
    max_examples=8,
    deadline=None,
    derandomize=True,  # the same requests every run
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    database=None,
)


def test_no_server_errors(server: Server) -> None:
    # schemathesis's own pytest plugin does not load with this pytest; its strategies are used
    # directly, one hypothesis run per operation
    spec = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [op.ok() for op in spec.get_all_operations()]
    assert len(operations) == 14, [o.label for o in operations]  # 8 POST, 6 GET
    seen: dict[str, set[int]] = {}

    for operation in operations:

        @SETTINGS
        @hypothesis.given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=120)
            case.validate_response(response, checks=[not_a_server_error])
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body
                assert "Traceback" not in response.text

        check()
    posts = {label: codes for label, codes in seen.items() if label.startswith("POST")}
    assert all(codes <= set(range(200, 500)) for codes in posts.values()), posts


def test_documented_examples_are_real_requests(server: Server) -> None:
    """The examples /docs shows run: each request schema's example is answered 200 (search: 404,
    this server has no index; chat: 404 for the placeholder model name, 200 with the real one)."""
    import httpx

    doc = httpx.get(server.url + "/openapi.json", timeout=60).json()
    schemas = doc["components"]["schemas"]
    expected = {
        "Caption": 200,
        "Vqa": 400,
        "Match": 200,
        "Embed": 200,
        "Classify": 200,
        "Search": 404,
        "Explain": 200,
        "Chat": 404,
    }
    for name, status in expected.items():
        (example,) = schemas[f"{name}Request"]["examples"]
        path = {"Vqa": "vqa", "Chat": "chat/completions"}.get(name, name.lower())
        r = httpx.post(f"{server.url}/v1/{path}", json=example, timeout=120)
        assert r.status_code == status, (name, r.text)  # vqa: 400, this model captions
    model = httpx.get(server.url + "/v1/models", timeout=60).json()["data"][0]["id"]
    chat = httpx.post(
        server.url + "/v1/chat/completions", json={**schemas["ChatRequest"]["examples"][0], "model": model}
    )
    assert chat.status_code == 200, chat.text
