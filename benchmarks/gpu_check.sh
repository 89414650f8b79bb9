#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU (e.g. an H200); finishes in well under 5 minutes.
# Installs the pinned packages into a venv unless torch with CUDA is already importable.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, h5py, pandas; assert torch.cuda.is_available()" 2>/dev/null; then
  "$PY" -m venv /tmp/l1kformer-gpu && PY=/tmp/l1kformer-gpu/bin/python
  "$PY" -m pip install --quiet torch h5py pandas pyarrow numpy
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 timeout 290 "$PY" benchmarks/gpu_check.py "$@"
