#!/usr/bin/env bash
# Point-JEPA pretraining on ShapeNet55 with the published settings (500 epochs, seed 1), logged to W&B
# (offline without a login), then the table of its validation loss and SVM validation accuracies.
#   bash scripts/pretrain.sh [extra CLI arguments, e.g. --trainer.devices 1]
# Environment: SEEDS (default 1, the published seed; several give several pretrainings), OUT_DIR
# (default artifacts/protocol/pretraining), PYTHON. The checkpoint to fine-tune is
# $OUT_DIR/seed<seed>/**/checkpoints/last.ckpt (printed at the end).
set -euo pipefail
SEEDS=${SEEDS:-1}
source "$(dirname "$0")/_protocol.sh"
OUT_DIR=${OUT_DIR:-artifacts/protocol/pretraining}

for seed in $SEEDS; do
    run="$OUT_DIR/seed$seed"
    if [[ -f "$run/.done" ]]; then
        echo "== seed $seed: already finished ($run)"
        continue
    fi
    echo "== seed $seed -> $run"
    "$PYTHON" -m pointjepa fit -c "$CONFIGS/pretraining/shapenet.yaml" -c "$CONFIGS/wandb/pretraining_shapenet.yaml" \
        --seed_everything "$seed" --trainer.default_root_dir "$run" "$@"
    touch "$run/.done"
done
aggregate "$OUT_DIR" "val_loss svm_val_acc_modelnet40 svm_val_acc_scanobjectnn" --digits 3
find "$OUT_DIR" -name last.ckpt -path '*checkpoints*' -print
