"""File modes of what openblip writes.

safetensors' `save_file` and `tempfile.mkstemp` create files readable by their owner only
(0600); a model or result written for others to use should get the usual mode of a new file,
0666 less the umask (0644 under the common umask 022), as `open(path, "w")` gives.
"""

from __future__ import annotations

import os
from pathlib import Path


def umask() -> int:
    """The process umask (reading it means setting it: it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_shareable(path: str | os.PathLike[str]) -> Path:
    """Give a file just written the mode a plain `open(path, "w")` would have: 0666 & ~umask."""
    os.chmod(path, 0o666 & ~umask())
    return Path(path)
