#!/usr/bin/env bash
# The GPU half of m3rt on a machine with an NVIDIA GPU, in under 8 minutes: the tests marked `gpu`, then
# the GPU benchmark with every backend it finds (PyTorch fp16 always; onnxruntime-gpu and TensorRT where
# installed, each skipped with its reason where not). Prints a short table last.
#   bash bench/device/gpu.sh                       # results to $OUT (or bench/results)
#   bash bench/device/gpu.sh --shape tiny          # seconds: checks the script itself
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1
PY="${PYTHON:-$(command -v python || command -v python3)}"
export GIT_COMMIT="${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || true)}"
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
  || echo "nvidia-smi failed: no NVIDIA GPU visible; the GPU rows will be skipped"
"$PY" - <<'PYEOF'
import importlib.util as u
for pkg in ("torch", "transformers", "onnx", "onnxruntime", "tensorrt", "cuda", "tokenizers", "FlagEmbedding"):
    print(f"  {pkg:14s} {'found' if u.find_spec(pkg) else 'MISSING'}")
PYEOF
# The GPU tests (they skip, with the reason, for backends that are not installed).
timeout 180 "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider tests/test_gpu_backends.py 2>&1 | tail -15
# The benchmark; it stops adding backends when its budget runs out and says which it skipped.
timeout 270 "$PY" bench/device/gpu_bench.py --out "$OUT" --budget-s 240 "$@"
