#!/usr/bin/env bash
# Point-JEPA pretraining on ShapeNet55 (published settings) with torchrun, for clusters without SLURM. Start it
# on every node, with the same MASTER_ADDR (node 0's address) and a distinct NODE_RANK:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash scripts/torchrun/pretrain_shapenet.sh [CLI overrides]
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash scripts/torchrun/pretrain_shapenet.sh [CLI overrides]
# Environment: NNODES (1), NODE_RANK (0), GPUS (GPUs per node, default: all), MASTER_ADDR (127.0.0.1),
# MASTER_PORT (29500), RUN_DIR (artifacts/torchrun/pretrain; on storage every node sees), MAX_RESTARTS (0: how
# often torchrun restarts failed workers, each restart resuming from the newest checkpoint), PYTHON.
# torchrun passes SIGTERM on to the workers: they finish the step, save $RUN_DIR/checkpoints/preempted.ckpt and
# exit; the same command started again resumes from it exactly.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS=${GPUS:-$(nvidia-smi --list-gpus | wc -l)}
RUN_DIR=${RUN_DIR:-artifacts/torchrun/pretrain}
WORLD=$((NNODES * GPUS))
if ((WORLD == 0 || 512 % WORLD != 0)); then
    echo "error: batch 512 does not split over $WORLD processes ($NNODES nodes x $GPUS GPUs)" >&2
    exit 2
fi
export WANDB_MODE=${WANDB_MODE:-offline}
"$PYTHON" -m torch.distributed.run --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    --max_restarts "${MAX_RESTARTS:-0}" \
    -m pointjepa fit -c configs/Point-JEPA/pretraining/shapenet.yaml \
    -c configs/Point-JEPA/wandb/pretraining_shapenet.yaml --seed_everything 1 \
    --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS" --data.init_args.batch_size $((512 / WORLD)) \
    --trainer.default_root_dir "$RUN_DIR" --checkpoint.dirpath "$RUN_DIR/checkpoints" --ckpt_path last "$@"
