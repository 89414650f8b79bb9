#!/usr/bin/env bash
# The whole pipeline at seed scale on one GPU: resources/examples/gpu_full.yaml (99,840 simulated
# profiles, one GPU, training capped at 5 minutes per model), in at most 8 minutes on one H200.
# Prints results/gpu_full/summary.tsv and each run's history.
#
# A bare GPU machine has no internet: it runs with the torch, numpy, pandas and h5py it finds, plus
# wheels placed beside the repository in .whl/ (snakemake and what it needs that is missing there),
# installed into /tmp/site. Make them on a machine with pip (see the device notes in the README):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl snakemake==9.27.1 ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import snakemake" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU visible'; print(torch.cuda.get_device_name())"
start=$(date +%s)
rm -rf results/gpu_full
PYTHONUNBUFFERED=1 timeout 480 "$PY" -m snakemake --cores 16 --resources gpu=1 \
  --configfile resources/examples/gpu_full.yaml --set-threads train=8 embed=8 evaluate=8 --quiet rules
echo "gpu_pipeline: wall $(( $(date +%s) - start )) s"
column -t -s $'\t' results/gpu_full/summary.tsv
for h in results/gpu_full/runs/*/history.tsv; do echo "== $h"; column -t -s $'\t' "$h"; done
