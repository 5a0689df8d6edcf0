#!/usr/bin/env bash
# One-command check of the CUDA code paths (about 5-8 minutes on one H100), see benchmarks/README.md:
#   bash benchmarks/gpu_check.sh            # full sizes with CUDA, quick tiny sizes without
#   bash benchmarks/gpu_check.sh --quick    # tiny sizes everywhere (about a minute on a laptop CPU)
# Writes gpu_check.json, gpu_check.md and gpu_check.log to $OUT if set, else artifacts/gpu_check/.
# Where jsonargparse is missing, the wheels carried in .whl/ are installed to a scratch directory first.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import jsonargparse" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        site=${PIP_TARGET_DIR:-/tmp/pointjepa_site}
        echo "gpu_check: jsonargparse missing, installing the wheels in .whl/ to $site"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
            && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "gpu_check: jsonargparse missing and no wheels in .whl/ (see benchmarks/README.md); the CLI steps will fail"
    fi
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
