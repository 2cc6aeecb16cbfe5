"""Fixtures for comparing our metrics with pycocoevalcap's real pipeline (which runs Java)."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

JavaTokenize = Callable[[list[str]], list[list[str]]]


@pytest.fixture(scope="session")
def java_coco_tokenize(tmp_path_factory: pytest.TempPathFactory) -> JavaTokenize:
    """Tokenize one batch of captions with pycocoevalcap's own ``PTBTokenizer`` (the Stanford
    CoreNLP 3.4.1 jar it ships, run with Java), returning each caption's tokens in order.

    The module is loaded from a copy in a temporary folder: the original writes a temporary file
    next to itself (inside site-packages) on every call, which fails where that folder is
    read-only and litters it when a run is interrupted.  The jar is linked, not copied.
    """
    if shutil.which("java") is None:
        pytest.skip("pycocoevalcap's PTBTokenizer runs the Stanford tokenizer in Java; no 'java' on PATH")
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap (a dev dependency) is not installed")
    spec = importlib.util.find_spec("pycocoevalcap.tokenizer.ptbtokenizer")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin)
    workdir = tmp_path_factory.mktemp("ptbtokenizer")
    shutil.copy(source, workdir / source.name)
    jar = source.parent / "stanford-corenlp-3.4.1.jar"
    (workdir / jar.name).symlink_to(jar)
    copy_spec = importlib.util.spec_from_file_location("_coco_ptbtokenizer_copy", workdir / source.name)
    assert copy_spec is not None and copy_spec.loader is not None
    module = importlib.util.module_from_spec(copy_spec)
    copy_spec.loader.exec_module(module)
    tokenizer = module.PTBTokenizer()

    def tokenize(captions: list[str]) -> list[list[str]]:
        out = tokenizer.tokenize({"batch": [{"caption": c} for c in captions]})["batch"]
        assert len(out) == len(captions)
        return [line.split(" ") if line else [] for line in out]

    return tokenize
