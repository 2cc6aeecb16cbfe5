"""Idle OpenMP threads wait passively unless the user chose otherwise, set before torch loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openblip import threads


def test_passive_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.prefer_passive_wait()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.prefer_passive_wait()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # a user's choice is kept


def test_the_cli_sets_it_before_torch_loads() -> None:
    """In a fresh process, as `openblip` runs: main() sets the policy and builds every
    command's parser without loading torch, so libgomp (loaded with torch, reading the policy
    once) sees it; after torch loads, setting it is too late and says so."""
    code = (
        "import os, sys\n"
        "from openblip.cli import main\n"
        "assert main([]) == 2  # no command: help, exit 2\n"
        "assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'\n"
        "assert 'torch' not in sys.modules, 'a command module loads torch at import'\n"
        "import torch\n"
        "from openblip import threads\n"
        "assert not threads.prefer_passive_wait()\n"
    )
    env = {k: v for k, v in threads.os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
