#!/usr/bin/env bash
# MaxSim Triton kernels on an NVIDIA GPU: correctness vs float64, speed vs copy bandwidth and
# fp16 matmul rate, and vs a padded torch einsum. Run from anywhere; about 2-4 minutes on an H100.
#   bash bench/device/maxsim.sh            # GPU run; JSON to $OUT/maxsim_gpu.json if OUT is set
#   bash bench/device/maxsim.sh --smoke    # CPU, Triton interpreter, tiny shapes: checks the script
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-$(command -v python || command -v python3)}"
export GIT_COMMIT="${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || true)}"
if [[ "${1:-}" != "--smoke" ]] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
fi
# Hard stop well inside 5 minutes; the script itself skips optional parts after --budget-s.
exec timeout 285 "$PY" bench/device/maxsim_gpu.py "$@"
