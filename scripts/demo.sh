#!/usr/bin/env bash
# The quick-start demo: fit the digits recipe, test its best checkpoint, predict the test split.
set -euo pipefail
VENV=${1:-.venv}
ZOO="$VENV/bin/zoo"
RUN_ROOT=${ZOO_DEMO_ROOT:-runs/demo}
rm -rf "$RUN_ROOT"
start=$(date +%s)
"$ZOO" fit --config recipes/vision/digits.yaml --trainer.default_root_dir "$RUN_ROOT" --trainer.enable_progress_bar false
ckpt=$(ls -d "$RUN_ROOT"/digits/version_*/checkpoints/best.ckpt | tail -n 1)
echo "== testing $ckpt"
"$ZOO" test --config recipes/vision/digits.yaml --trainer.default_root_dir "$RUN_ROOT" --ckpt_path "$ckpt" \
  --trainer.enable_progress_bar false 2>&1 | tee "$RUN_ROOT/test.log"
"$ZOO" predict --config recipes/vision/digits.yaml --trainer.default_root_dir "$RUN_ROOT" --ckpt_path "$ckpt" \
  --output "$RUN_ROOT/predictions.csv"
echo "== demo finished in $(( $(date +%s) - start ))s; artifacts in $RUN_ROOT/digits/ (curves_*.png, confusion_matrix.png, classification_report.txt) and $RUN_ROOT/predictions.csv"
