#!/bin/bash
# ModelNet40 fine-tuning of a pretrained checkpoint (published recipe: 200 epochs, batch 32, encoder frozen until
# epoch 150), one srun task per GPU of the node (the original ran it on one GPU); preemption and requeue as in
# pretrain_shapenet.sh.
#   sbatch scripts/slurm/classification_modelnet.sh PRETRAINED_CKPT [CLI overrides, e.g. --seed_everything 2]
#SBATCH --job-name=classification
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1       # one task per GPU
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=03:00:00
#SBATCH --signal=SIGUSR1@90       # checkpoint and requeue before the time limit
#SBATCH --requeue
#SBATCH --output=%x-%j.out         # in the directory sbatch was run from (the repository root)
#SBATCH --open-mode=append        # a requeued job appends to the same log

source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/slurm/_job.sh"
CKPT=${1:?usage: sbatch scripts/slurm/classification_modelnet.sh PRETRAINED_CKPT [CLI overrides]}
shift
batch=$(per_process_batch 32)
run_task pointjepa.tasks.classification \
    -c "$CONFIGS/classification/modelnet40.yaml" -c "$CONFIGS/wandb/classification_modelnet40.yaml" \
    --model.pretrained_ckpt_path "$CKPT" --data.init_args.batch_size "$batch" "$@"
