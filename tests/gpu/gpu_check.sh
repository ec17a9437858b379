#!/usr/bin/env bash
# GPU check for tfdist: trains digits on this machine's GPUs under mirrored (all GPUs, one
# process), multi_worker (one process per GPU) and parameter_server (workers on GPUs, ps and
# chief on CPU), and prints a JSON summary per run: val_accuracy, examples_per_sec,
# num_replicas and the devices TensorFlow created. Exits 0 when every run trained on GPUs.
# Without nvidia-smi it prints "gpu_check: skipped: no GPU ..." and exits 0.
#
#   bash tests/gpu/gpu_check.sh            # PYTHON=/path/to/python to choose the interpreter
set -euo pipefail
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: skipped: no GPU (nvidia-smi is not on PATH)"
  exit 0
fi
cd "$(dirname "$0")/../.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" tests/gpu/gpu_check.py "$@"
