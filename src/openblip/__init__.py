"""openblip: BLIP (Li et al., ICML 2022) from scratch in PyTorch.

`openblip.load(source)` returns a BlipPipeline (openblip/api.py); it is imported lazily so that
`import openblip` stays cheap for the subpackages that do not need torch models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BlipPipeline", "__version__", "load"]

if TYPE_CHECKING:
    from openblip.api import BlipPipeline, load


def __getattr__(name: str) -> Any:
    if name in ("load", "BlipPipeline"):
        from openblip import api

        return getattr(api, name)
    raise AttributeError(f"module 'openblip' has no attribute {name!r}")
