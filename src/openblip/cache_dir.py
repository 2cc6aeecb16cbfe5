"""Where openblip keeps what it makes or downloads once (downloaded checkpoints, built CPU kernels,
test-only dependencies): one directory, chosen here for every part of the package. Standard
library only, so that any module may import it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$OPENBLIP_CACHE, else $XDG_CACHE_HOME/openblip, else ~/.cache/openblip."""
    if os.environ.get("OPENBLIP_CACHE"):
        return Path(os.environ["OPENBLIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openblip"
