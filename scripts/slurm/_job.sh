# Helpers shared by the SLURM job scripts (sourced by them, not submitted on its own).
# Environment: VENV (virtual environment to activate, default .venv), RUN_DIR (where the run writes, default
# artifacts/slurm/<job name>-<job id>: a requeued job keeps its id, so it finds its checkpoints again), PYTHON.

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "${BASH_SOURCE[0]}")/../..}"
CONFIGS=configs/Point-JEPA
PYTHON=${PYTHON:-python}

# module load python/3.11 cuda/12.4   # the cluster's modules, if it has them
if [[ -f "${VENV:-.venv}/bin/activate" ]]; then
    # shellcheck disable=SC1091
    source "${VENV:-.venv}/bin/activate"
fi

export WANDB_MODE=${WANDB_MODE:-offline}            # compute nodes often have no internet; `wandb sync` later
export TORCH_NCCL_BLOCKING_WAIT=1                    # a dead rank ends the job instead of hanging it
NODES=${SLURM_NNODES:-1}
GPUS_PER_NODE=${SLURM_NTASKS_PER_NODE:-1}            # one task per GPU: Lightning's SLURM environment
RUN_DIR=${RUN_DIR:-artifacts/slurm/${SLURM_JOB_NAME:-job}-${SLURM_JOB_ID:-local}}

# per_process_batch <total>: the published batch split over all processes (one gradient over <total> clouds);
# assign it (batch=$(per_process_batch 512)) so that set -e ends the script when it does not split.
per_process_batch() {
    local world=$((NODES * GPUS_PER_NODE))
    if (($1 % world != 0)); then
        echo "error: batch $1 does not split over $world processes ($NODES nodes x $GPUS_PER_NODE GPUs)" >&2
        exit 2
    fi
    echo $(($1 / world))
}

# run_task <module> [CLI arguments...]: srun one process per GPU on every node; every start of the job (the
# first and each requeue) resumes from the newest of last.ckpt and preempted.ckpt in $RUN_DIR/checkpoints.
run_task() {
    local module=$1
    shift
    srun "$PYTHON" -m "$module" fit "$@" \
        --trainer.num_nodes "$NODES" --trainer.devices "$GPUS_PER_NODE" \
        --trainer.default_root_dir "$RUN_DIR" --checkpoint.dirpath "$RUN_DIR/checkpoints" \
        --ckpt_path last
}
