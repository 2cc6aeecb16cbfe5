"""Building the kernels: once, cached by a hash of the sources; a build that fails is said once
at WARNING with the fallback, and every way the kernels can be missing leaves torch's ops."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from openblip.backends import cpu
from openblip.backends.cpu import build


@pytest.fixture()
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The library resolved anew, built into a private cache; resolved anew again afterwards."""
    monkeypatch.setenv("OPENBLIP_CACHE", str(tmp_path))
    build.library.cache_clear()
    build._warned.clear()
    yield tmp_path
    build.library.cache_clear()
    build._warned.clear()


def test_build_is_cached(fresh: Path) -> None:
    if build.unsupported_reason() is not None:
        pytest.skip(build.unsupported_reason() or "")
    assert build.available() is None
    built = sorted((fresh / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    assert build.compile_kernels() == built[0] and built[0].stat().st_mtime_ns == stamp  # no rebuild


def test_failed_build_warns_once_and_auto_falls_back(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if build.unsupported_reason() is not None:
        pytest.skip(build.unsupported_reason() or "")
    monkeypatch.setenv("CC", str(fresh / "no-such-compiler"))
    with caplog.at_level(logging.WARNING, logger="openblip.backends.cpu.build"):
        auto = cpu.choose("auto", torch.device("cpu"), torch.float32)
        build.library.cache_clear()  # a second model loaded in a new try: no second warning
        assert cpu.choose("auto", torch.device("cpu"), torch.float32) == auto
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "build failed" in warnings[0].getMessage() and "no-such-compiler" in warnings[0].getMessage()
    assert "uses torch's own ops" in warnings[0].getMessage()
    assert not auto.enabled and auto.setting is cpu.KernelSetting.AUTO and "build failed" in auto.note
    with pytest.raises(cpu.KernelsUnavailable, match=r"cpu_kernels='on'.*build failed"):
        cpu.choose("on", torch.device("cpu"), torch.float32)


def test_unsupported_machine_is_no_failure(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An ARM or macOS machine: no build tried, no warning, torch's ops."""
    monkeypatch.setattr(build.platform, "machine", lambda: "arm64")
    with caplog.at_level(logging.INFO):
        auto = cpu.choose("auto", torch.device("cpu"), torch.float32)
    assert not auto.enabled and "not x86-64" in auto.note
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not (fresh / "kernels").exists()


def test_sources_are_package_data() -> None:
    """An installed (non-editable) package must ship every source and header the build reads."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[3]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["openblip"]
    package = root / "src" / "openblip"
    for path in build.SOURCES + build.HEADERS:
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data"
    on_disk = {p.name for p in build.CSRC.iterdir() if p.suffix in (".c", ".h")}
    assert on_disk == {p.name for p in build.SOURCES + build.HEADERS}  # none left out of the build
