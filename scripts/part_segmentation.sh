#!/usr/bin/env bash
# ShapeNetPart part segmentation (published: 85.8 ± 0.1 category mIoU): fine-tune a pretrained checkpoint
# once per seed, then the mean ± std over the seeds of each run's best val_cat_miou and val_ins_miou.
#   bash scripts/part_segmentation.sh PRETRAINED_CKPT [overrides for every run]
# Environment: PRETRAINED_CKPT (instead of the argument), SEEDS (default 1..10, as the original scripts), OUT_DIR (default
# artifacts/protocol/part_segmentation), PYTHON.
# Runs log to W&B (offline without a login); finished seeds are skipped when the script is started
# again; the table also goes to OUT_DIR/results.md.
set -euo pipefail
source "$(dirname "$0")/_protocol.sh"
CKPT=${1:-${PRETRAINED_CKPT:-}}
require_file "pretrained checkpoint" "$CKPT"
shift $(($# > 0 ? 1 : 0))
OUT_DIR=${OUT_DIR:-artifacts/protocol/part_segmentation}

fine_tune_seeds pointjepa.tasks.part_segmentation "$OUT_DIR" "val_cat_miou val_ins_miou" \
    -c "$CONFIGS/segmentation/shapenetpart.yaml" -c "$CONFIGS/wandb/part_segmentation_shapenet_part.yaml" \
    --model.pretrained_ckpt_path "$CKPT" "$@"
