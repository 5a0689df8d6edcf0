#!/usr/bin/env bash
# ModelNet40 test-time voting (published: 94.1 ± 0.1): each seed's best checkpoint of
# scripts/classification_modelnet.sh is evaluated with 10-pass voting, then mean ± std over the seeds.
#   bash scripts/classification_modelnet_vote.sh [RUNS_DIR | FINETUNED_CKPT] [extra pointjepa.eval.voting arguments]
# RUNS_DIR (default artifacts/protocol/classification_modelnet): the fine-tuning runs, seed<seed>/ each.
# FINETUNED_CKPT: one fine-tuned checkpoint voted once per seed (the original project's protocol).
# Environment: SEEDS (default 1..10, as the original scripts), VOTE_NUM (default 10), OUT_DIR (default: RUNS_DIR, or
# artifacts/protocol/classification_modelnet_vote for a checkpoint), PYTHON.
set -euo pipefail
source "$(dirname "$0")/_protocol.sh"
SOURCE=${1:-artifacts/protocol/classification_modelnet}
shift $(($# > 0 ? 1 : 0))
if [[ -f "$SOURCE" ]]; then
    OUT_DIR=${OUT_DIR:-artifacts/protocol/classification_modelnet_vote}
elif [[ -d "$SOURCE" ]]; then
    OUT_DIR=${OUT_DIR:-$SOURCE}
else
    echo "error: $SOURCE: neither a fine-tuned checkpoint nor a directory of fine-tuning runs" >&2
    exit 1
fi

for seed in $SEEDS; do
    ckpt=$SOURCE
    if [[ -d "$SOURCE" ]]; then  # the best checkpoint (epoch=...-val_acc=....ckpt) of that seed's run
        ckpt=$(find "$SOURCE/seed$seed" -name 'epoch=*.ckpt' -path '*checkpoints*' 2>/dev/null | sort | tail -n 1)
        require_file "best checkpoint of $SOURCE/seed$seed" "$ckpt"
    fi
    mkdir -p "$OUT_DIR/seed$seed"
    "$PYTHON" -m pointjepa.eval.voting --ckpt "$ckpt" --config "$CONFIGS/classification/modelnet40.yaml" \
        --vote_num "${VOTE_NUM:-10}" --seed "$seed" --json "$OUT_DIR/seed$seed/voting.json" "$@"
done
aggregate "$OUT_DIR" "val_vote_acc"
