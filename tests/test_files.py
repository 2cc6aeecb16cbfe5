"""Written files get the mode of a plain new file, not safetensors' / mkstemp's 0600."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from openblip.files import make_shareable, umask


def test_make_shareable_follows_the_umask(tmp_path: Path) -> None:
    before = os.umask(0o027)
    try:
        assert umask() == 0o027 and umask() == 0o027  # reading it leaves it as it was
        fd, name = tempfile.mkstemp(dir=tmp_path)
        os.close(fd)
        assert Path(name).stat().st_mode & 0o777 == 0o600
        make_shareable(name)
        assert Path(name).stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(before)
