# Helpers shared by the protocol scripts (sourced by them, not run on its own).
# Environment: PYTHON (default python), SEEDS (default 1..10, as the original scripts), OUT_DIR (where the runs go).

PYTHON=${PYTHON:-python}
SEEDS=${SEEDS:-"1 2 3 4 5 6 7 8 9 10"}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIGS="$ROOT/configs/Point-JEPA"

# require_file <description> <path>: stop with one clear line when the file is missing.
require_file() {
    if [[ -z "$2" ]]; then
        echo "error: no $1 given (first argument or environment variable; see the script's header)" >&2
        exit 2
    fi
    if [[ ! -f "$2" ]]; then
        echo "error: $1 $2: file not found" >&2
        exit 1
    fi
}

# fine_tune_seeds <task module> <output dir> <metrics> [CLI arguments...]: one fine-tuning run per seed in
# <output dir>/seed<seed> (finished seeds are skipped when the script is started again), then the table.
fine_tune_seeds() {
    local module=$1 out=$2 metrics=$3
    shift 3
    for seed in $SEEDS; do
        local run="$out/seed$seed"
        if [[ -f "$run/.done" ]]; then
            echo "== seed $seed: already finished ($run)"
            continue
        fi
        echo "== seed $seed -> $run"
        "$PYTHON" -m "$module" fit "$@" --seed_everything "$seed" --trainer.default_root_dir "$run"
        touch "$run/.done"
    done
    aggregate "$out" "$metrics"
}

# aggregate <output dir> <metrics> [aggregate options...]: mean ± std over the seed runs, also in <output dir>/results.md.
aggregate() {
    local out=$1 metrics=$2
    shift 2
    local runs=()
    for seed in $SEEDS; do runs+=("$out/seed$seed"); done
    # shellcheck disable=SC2086  # metrics is a space-separated list
    "$PYTHON" -m pointjepa.eval.aggregate "${runs[@]}" --metric $metrics --percent --output "$out/results.md" "$@"
}
