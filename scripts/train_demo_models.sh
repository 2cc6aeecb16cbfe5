#!/usr/bin/env bash
# Train the demo models shipped in the package (src/openblip/demo_models/), offline:
#   1. the synthetic scenes, seed 100 (18,000 train images; the quality test uses other seeds)
#   2. configs/demo_pretrain.toml: one pre-training-layout model (ITC + ITM + LM) on the clean
#      train split -> synthetic-caption and synthetic-filter
#   3. configs/demo_vqa.toml: the VQA model, fine-tuned from step 2's model on the scenes'
#      questions -> synthetic-vqa
#   4. both copied into the package in fp16, then their quality measured on a fresh seed
# About 45 minutes on 2 CPU cores (README "Shipped demo models"). Extra arguments are passed to both
# training runs (e.g. --set schedule.max_steps=N). Re-running resumes or reuses what is finished.
#   OUT=runs/demo bash scripts/train_demo_models.sh [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/demo}
BLIP=".venv/bin/openblip"
PY=".venv/bin/python"
[ -x "$BLIP" ] || { BLIP="openblip"; PY="python"; }
PACKAGE=src/openblip/demo_models

if [ ! -f "$OUT/data/manifest.json" ]; then
  "$BLIP" data synth --out "$OUT/data" --num-images 40000 --seed 100
fi

train() {  # CONFIG RUN_DIR [--set ...]: skipped when finished, resumed when interrupted
  local config=$1 dir=$2
  shift 2
  [ -f "$dir/model/openblip.json" ] && return 0
  local resume=()
  [ -d "$dir/checkpoints" ] && resume=(--resume)
  "$BLIP" train "$config" --set "data.train=$OUT/data/train" --set "run.out_dir=$dir" "${resume[@]}" "$@"
}
train configs/demo_pretrain.toml "$OUT/pretrain" "$@"
train configs/demo_vqa.toml "$OUT/vqa" --set "model.init_from=$OUT/pretrain/model" "$@"

"$PY" -c "import sys; from openblip.demo_models.pack import pack; pack(sys.argv[1], sys.argv[2])" \
  "$OUT/pretrain/model" "$PACKAGE/synthetic-pretrain"
"$PY" -c "import sys; from openblip.demo_models.pack import pack; pack(sys.argv[1], sys.argv[2])" \
  "$OUT/vqa/model" "$PACKAGE/synthetic-vqa"
du -sh "$PACKAGE"/synthetic-* >&2

echo "== quality on a fresh split (seed 9000, never used in training)" >&2
"$PY" scripts/demo_models_quality.py --out "$OUT/quality" --seed 9000 | tee "$OUT/quality.json"
