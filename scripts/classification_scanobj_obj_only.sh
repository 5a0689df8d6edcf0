#!/usr/bin/env bash
# ScanObjectNN OBJ_ONLY (objects without background, not perturbed): fine-tune a pretrained checkpoint
# once per seed, then the mean ± std over the seeds of each run's best val_acc.
#   bash scripts/classification_scanobj_obj_only.sh PRETRAINED_CKPT [overrides for every run]
# Environment: PRETRAINED_CKPT (instead of the argument), SEEDS (default 1..10, as the original scripts), OUT_DIR (default
# artifacts/protocol/classification_scanobj_obj_only), PYTHON.
# Runs log to W&B (offline without a login); finished seeds are skipped when the script is started
# again; the table also goes to OUT_DIR/results.md.
set -euo pipefail
source "$(dirname "$0")/_protocol.sh"
CKPT=${1:-${PRETRAINED_CKPT:-}}
require_file "pretrained checkpoint" "$CKPT"
shift $(($# > 0 ? 1 : 0))
OUT_DIR=${OUT_DIR:-artifacts/protocol/classification_scanobj_obj_only}

fine_tune_seeds pointjepa.tasks.classification "$OUT_DIR" "val_acc" \
    -c "$CONFIGS/classification/scanobjectnn.yaml" -c "$CONFIGS/classification/_scanobjectnn_obj_only.yaml" \
    -c "$CONFIGS/wandb/classification_scanobjectnn_obj_only.yaml" \
    --model.pretrained_ckpt_path "$CKPT" "$@"
