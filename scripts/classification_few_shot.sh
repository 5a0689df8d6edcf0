#!/usr/bin/env bash
# ModelNet40 few-shot classification: 5/10-way x 10/20-shot, fine-tuned from a pretrained checkpoint on
# each of the 10 folds (scripts/classification_few_shot.py), then mean ± std over the folds per setting.
#   bash scripts/classification_few_shot.sh PRETRAINED_CKPT [extra CLI arguments for every run]
# Environment: PRETRAINED_CKPT (instead of the argument), FOLDS (default 0..9), WAYS (default "5 10"),
# SHOTS (default "10 20"), OUT_DIR (default artifacts/protocol/few_shot), PYTHON. Finished folds are skipped.
set -euo pipefail
source "$(dirname "$0")/_protocol.sh"
CKPT=${1:-${PRETRAINED_CKPT:-}}
require_file "pretrained checkpoint" "$CKPT"
shift $(($# > 0 ? 1 : 0))
OUT_DIR=${OUT_DIR:-artifacts/protocol/few_shot}
FOLDS=${FOLDS:-"0 1 2 3 4 5 6 7 8 9"}
WAYS=${WAYS:-"5 10"}
SHOTS=${SHOTS:-"10 20"}

# shellcheck disable=SC2086  # space-separated lists
"$PYTHON" "$ROOT/scripts/classification_few_shot.py" --config "$CONFIGS/classification/modelnet_fewshot.yaml" \
    --pretrained_ckpt_path "$CKPT" --output_dir "$OUT_DIR" --ways $WAYS --shots $SHOTS --folds $FOLDS \
    -- -c "$CONFIGS/wandb/classification_modelnet_fewshot.yaml" "$@"

runs=()
for way in $WAYS; do for shot in $SHOTS; do for fold in $FOLDS; do
    runs+=("$OUT_DIR/${way}way_${shot}shot/fold$fold")
done; done; done
"$PYTHON" -m pointjepa.eval.aggregate "${runs[@]}" --metric val_acc --percent --output "$OUT_DIR/results.md"
