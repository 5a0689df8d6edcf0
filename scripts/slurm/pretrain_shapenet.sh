#!/bin/bash
# Point-JEPA pretraining on ShapeNet55 (published settings: 500 epochs, seed 1, batch 512) on one node with
# several GPUs, one srun task per GPU; the batch is split over the GPUs (sync_batchnorm keeps batch-norm
# statistics over all 512 clouds).
#   sbatch scripts/slurm/pretrain_shapenet.sh [CLI overrides]          (from the repository root)
# 90 s before the time limit SLURM sends SIGUSR1: the run finishes its step, saves
# $RUN_DIR/checkpoints/preempted.ckpt, requeues the job and exits; the requeued job resumes from it exactly.
#SBATCH --job-name=pretrain
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4       # one task per GPU
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=10:00:00
#SBATCH --signal=SIGUSR1@90       # checkpoint and requeue before the time limit
#SBATCH --requeue                 # also requeue after a node failure or a preemption
#SBATCH --output=%x-%j.out         # in the directory sbatch was run from (the repository root)
#SBATCH --open-mode=append        # a requeued job appends to the same log

source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/slurm/_job.sh"
batch=$(per_process_batch 512)
run_task pointjepa -c "$CONFIGS/pretraining/shapenet.yaml" -c "$CONFIGS/wandb/pretraining_shapenet.yaml" \
    --seed_everything 1 --data.init_args.batch_size "$batch" "$@"
