"""openblip: BLIP (Li et al., ICML 2022) from scratch in PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
