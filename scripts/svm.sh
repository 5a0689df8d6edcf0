#!/usr/bin/env bash
# SVM linear probe of a pretrained encoder on ModelNet40 and ScanObjectNN (OBJ_BG), one probe per seed
# (the seed picks the FPS subsampling), then mean ± std over the seeds (published: 93.7 ± 0.2 on ModelNet40).
#   bash scripts/svm.sh PRETRAINED_CKPT [extra pointjepa.eval.svm arguments, e.g. --data_root data]
# Environment: PRETRAINED_CKPT (instead of the argument), SEEDS (default 1..10, as the original scripts), OUT_DIR (default
# artifacts/protocol/svm), SVM_METRICS (default "svm_val_acc_modelnet40 svm_val_acc_scanobjectnn"; one
# svm_val_acc_<name> per data set probed), PYTHON.
set -euo pipefail
source "$(dirname "$0")/_protocol.sh"
CKPT=${1:-${PRETRAINED_CKPT:-}}
require_file "pretrained checkpoint" "$CKPT"
shift $(($# > 0 ? 1 : 0))
OUT_DIR=${OUT_DIR:-artifacts/protocol/svm}

for seed in $SEEDS; do
    mkdir -p "$OUT_DIR/seed$seed"
    "$PYTHON" -m pointjepa.eval.svm --ckpt "$CKPT" --seeds "$seed" --json "$OUT_DIR/seed$seed/svm.json" "$@"
done
aggregate "$OUT_DIR" "${SVM_METRICS:-svm_val_acc_modelnet40 svm_val_acc_scanobjectnn}"
