#!/bin/bash
# Point-JEPA pretraining on ShapeNet55 (published settings) on several nodes: srun starts one process per GPU
# on every node and Lightning's SLURM environment wires them into one DDP job (NCCL); the batch of 512 is
# split over all GPUs. Preemption and requeue as in pretrain_shapenet.sh.
#   sbatch scripts/slurm/pretrain_shapenet_multinode.sh [CLI overrides]
#   sbatch --nodes=4 scripts/slurm/pretrain_shapenet_multinode.sh      # more nodes (512 must split over them)
#SBATCH --job-name=pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4       # one task per GPU
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=06:00:00
#SBATCH --signal=SIGUSR1@90       # checkpoint and requeue before the time limit
#SBATCH --requeue
#SBATCH --output=%x-%j.out         # in the directory sbatch was run from (the repository root)
#SBATCH --open-mode=append        # a requeued job appends to the same log

source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/slurm/_job.sh"
batch=$(per_process_batch 512)
run_task pointjepa -c "$CONFIGS/pretraining/shapenet.yaml" -c "$CONFIGS/wandb/pretraining_shapenet.yaml" \
    --seed_everything 1 --data.init_args.batch_size "$batch" "$@"
