"""Remote sources: URL downloads into the cache (atomic, reused), hub ids, fast offline errors."""

from __future__ import annotations

import functools
import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openblip.checkpoint_io import load_model
from openblip.config import LAYOUTS
from openblip.convert import fetch


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_is_downloaded_once_into_the_cache(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = server
    monkeypatch.setenv("OPENBLIP_CACHE", str(tmp_path / "cache"))
    (root / "model_x.pth").write_bytes(b"0123456789" * 1000)
    path = fetch.download_url(base + "model_x.pth")
    assert path.read_bytes() == b"0123456789" * 1000 and path.name.endswith("-model_x.pth")
    assert path.parent == tmp_path / "cache" / "urls"
    assert not list(path.parent.glob("*.part"))
    (root / "model_x.pth").unlink()  # served no more: the cached copy is used
    assert fetch.download_url(base + "model_x.pth") == path


def test_url_error_is_fast_and_says_what_to_do(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    monkeypatch.setenv("OPENBLIP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(fetch.SourceUnavailable, match=r"could not fetch .*missing\.pth.*pass the local file path"):
        load_model(base + "missing.pth")  # 404
    start = time.perf_counter()
    with pytest.raises(fetch.SourceUnavailable, match=re.escape("could not fetch http://127.0.0.1:1/model_base.pth")):
        load_model("http://127.0.0.1:1/model_base.pth")  # nothing listens on port 1
    assert time.perf_counter() - start < 10
    assert not list((tmp_path / "cache" / "urls").glob("*"))  # no partial files left


def test_hub_id_offline_fails_fast_with_advice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so that no local directory of that name exists
    start = time.perf_counter()
    with pytest.raises(fetch.SourceUnavailable, match=r"could not fetch openblip-tests/no-such-model .*local path"):
        load_model("openblip-tests/no-such-model")
    assert time.perf_counter() - start < 10


def test_unknown_local_path_is_not_taken_for_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_model(tmp_path / "nope" / "model.pth")


def test_release_table() -> None:
    assert len({r.source for r in fetch.RELEASES}) == len(fetch.RELEASES)
    for release in fetch.RELEASES:
        assert release.layout in LAYOUTS
        assert fetch.is_hub_id(release.source) or release.source.startswith(fetch.SALESFORCE_BASE)
