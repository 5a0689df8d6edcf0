#!/usr/bin/env bash
# Install pointjepa with a matched torch/torchvision pair.
#   bash install_py.sh            # the package
#   bash install_py.sh dev        # the package and the test extras
# TORCH_VERSION / TORCHVISION_VERSION override the pinned pair; PIP overrides the pip command.
set -euo pipefail
cd "$(dirname "$0")"

PIP=${PIP:-"python -m pip"}
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
EXTRAS=${1:-}

# Install the pair in one resolver run so pip cannot mix a local CPU-only torch wheel
# with a CUDA torchvision from the index (that breaks `import timm`: "torchvision::nms does not exist").
$PIP install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
if [ -n "$EXTRAS" ]; then
  $PIP install -e ".[${EXTRAS}]" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
else
  $PIP install -e . "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
fi
python -c "import torch, torchvision, timm, pytorch_lightning; print('pointjepa installed: torch', torch.__version__, '| torchvision', torchvision.__version__)"
