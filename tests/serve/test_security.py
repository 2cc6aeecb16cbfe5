"""The API key check (constant-time, Bearer or Basic with the key as password)."""

from __future__ import annotations

import base64

from openblip.serve.security import key_matches


def test_key_matches() -> None:
    assert key_matches("Bearer k3y", "k3y")
    assert key_matches("bearer   k3y ", "k3y")
    assert key_matches("Basic " + base64.b64encode(b"anyone:k3y").decode(), "k3y")
    for header in (
        None,
        "",
        "k3y",
        "Bearer",
        "Bearer k3",
        "Bearer k3yy",
        "Token k3y",
        "Basic !!!",
        "Basic " + base64.b64encode(b"k3y").decode(),
    ):
        assert not key_matches(header, "k3y"), header
    assert key_matches("Bearer ключ", "ключ")  # non-ASCII keys compare as UTF-8 bytes
