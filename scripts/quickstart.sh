#!/usr/bin/env bash
# The main job, offline, on the embedded default: write the synthetic-scenes benchmark, pre-train a
# small BLIP on it with the real objectives (ITC + ITM + LM), then evaluate retrieval and captions
# on held-out images. A few minutes on 2 CPU cores. Re-running resumes/reuses what is there.
#   OUT=runs/quickstart bash scripts/quickstart.sh [extra --set overrides for training]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/quickstart}
BLIP=".venv/bin/openblip"
[ -x "$BLIP" ] || BLIP="openblip"
if [ ! -f "$OUT/data/manifest.json" ]; then
  "$BLIP" data synth --out "$OUT/data" --size ci --seed 0
fi
resume=()
[ -d "$OUT/train/checkpoints" ] && resume=(--resume)
"$BLIP" train configs/pretrain_synth_ci.toml --set "data.train=$OUT/data/train" --set "run.out_dir=$OUT/train" \
  "${resume[@]}" "$@"
# Each eval writes its JSON (--output) and an HTML page of the images with what the model said
# (--report), and ends with a short summary on stderr saying what was measured and where these are.
echo "== retrieval on held-out images (ITC top-k re-ranked by ITM)" >&2
"$BLIP" eval --model "$OUT/train/model" --data "$OUT/data/test" --task retrieval \
  --output "$OUT/eval_retrieval.json" --report "$OUT/eval_retrieval.html"
echo "== captions on held-out images (BLEU/ROUGE-L/CIDEr, scene attribute F1)" >&2
"$BLIP" eval --model "$OUT/train/model" --data "$OUT/data/test" --task caption --captions --limit 20 \
  --output "$OUT/eval_caption.json" --report "$OUT/eval_caption.html"
