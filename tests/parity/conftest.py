"""Every parity test runs with our CPU kernels and without (tests/conftest.py
cpu_kernels_both). Makes the parity helpers (blip_fixtures.py) importable: pytest runs with
--import-mode=importlib, which does not put test directories on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _cpu_kernels(cpu_kernels_both: str) -> str:
    return cpu_kernels_both
