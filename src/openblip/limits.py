"""Input limits shared by the library and the command line.

Kept apart from openblip.image (which imports torch) so that the CLI can show them in `--help`
without loading torch.
"""

from __future__ import annotations

# Same as PIL's own Image.MAX_IMAGE_PIXELS default (1024 * 1024 * 1024 // 4 // 3).
DEFAULT_MAX_PIXELS = 89_478_485
