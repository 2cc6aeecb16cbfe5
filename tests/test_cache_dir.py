from __future__ import annotations

from pathlib import Path

import pytest

from openblip.cache_dir import cache_dir


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENBLIP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "openblip"
    monkeypatch.setenv("OPENBLIP_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
