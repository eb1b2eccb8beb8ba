#!/usr/bin/env bash
# The GPU half of m3rt on a lent H100 / H200, in ONE device call, hard stop at 8 minutes (470 s of work):
#   0. onnxruntime-gpu from the carried parts (.ortgpu, made here by bench/device/ort_gpu_carry.py pack);
#   1. the bge-m3-shape random model and its fp32 / fp16 artifacts, built on the device's CPUs (2.3 GB could
#      not travel) WHILE 2. the MaxSim Triton benchmark runs on the GPU (bench/device/maxsim_gpu.py);
#   3. onnxruntime CUDA fp16 against PyTorch fp16, fidelity and overflow checks (bench/device/gpu_bench.py);
#   4. the Triton kernel tests on the GPU, with the time left.
# SKIP_MAXSIM=1 leaves out step 2 (a re-check of the runtime at a new commit: TOTAL_S=450 SKIP_MAXSIM=1).
# PARTS picks gpu_bench's parts (engine, runtime, streaming, pipelined; default all), and only the artifacts
# they need are exported (ARTIFACTS overrides: fp32,fp16,fp16-standard); SKIP_KERNEL_TESTS=1 leaves out step 4.
# The pipelined executor alone (issue 27), one short device call:
#   TOTAL_S=420 SKIP_MAXSIM=1 SKIP_KERNEL_TESTS=1 PARTS=pipelined bash bench/device/run_all.sh
# Results under $OUT (json, md, logs); the short tables print last.
#   bash bench/device/run_all.sh                 # on the device
#   WORK=/tmp/w SHAPE=tiny bash bench/device/run_all.sh   # anywhere with a GPU: checks the script in seconds
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
TOTAL=${TOTAL_S:-470}
left() { echo $((TOTAL - ($(date +%s) - START))); }
cap() { local l; l=$(( $(left) - ${2:-0} )); (( l < $1 )) && echo $(( l > 5 ? l : 5 )) || echo "$1"; }
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export GIT_COMMIT="${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
PY="${PYTHON:-python3}"
OUT="${OUT:-bench/results/device}"
WORK="${WORK:-/tmp/m3rt-gpu}"
SHAPE="${SHAPE:-bge-m3}"
PARTS="${PARTS:-all}"
if [[ -z "${ARTIFACTS:-}" ]]; then
  case ",$PARTS," in
    *,all,*|*,engine,*) ARTIFACTS=all ;;
    *,runtime,*) ARTIFACTS=fp32,fp16 ;;
    *) ARTIFACTS=fp16 ;;
  esac
fi
mkdir -p "$OUT" "$WORK"
{ date -u; echo "commit $GIT_COMMIT"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  nproc; "$PY" -c 'import torch, triton, transformers, onnx, onnxruntime as o; print("torch", torch.__version__, "triton", triton.__version__, "transformers", transformers.__version__, "onnx", onnx.__version__, "onnxruntime (image)", o.__version__)'
} 2>&1 | tee "$OUT/env.txt"

# 0. onnxruntime-gpu
ORT_SITE=/tmp/m3rt-ortgpu-site
if [[ -f .ortgpu/parts.json ]]; then
  t=$(date +%s)
  timeout 90 "$PY" bench/device/ort_gpu_carry.py stash .ortgpu && timeout 90 "$PY" bench/device/ort_gpu_carry.py unpack --target "$ORT_SITE"
  echo "onnxruntime-gpu unpacked in $(( $(date +%s) - t )) s" | tee -a "$OUT/env.txt"
fi
GPU_PATH="$PYTHONPATH"
[[ -d "$ORT_SITE/onnxruntime" ]] && GPU_PATH="$ORT_SITE:$PYTHONPATH"

# 1. model + artifacts on the CPUs, in the background
timeout "$(cap 330)" "$PY" bench/device/gpu_bench.py prepare --work "$WORK" --shape "$SHAPE" --artifacts "$ARTIFACTS" \
  > "$OUT/prepare.log" 2>&1 &
PREP=$!

# 2. MaxSim on the GPU meanwhile
#    (SKIP_MAXSIM=1: the kernels are unchanged since a committed run; their tests still run in step 4)
MAXSIM_ARGS=()
[[ "$SHAPE" == tiny ]] && MAXSIM_ARGS=(--docs-a 2000 --docs-b 500)
if [[ -z "${SKIP_MAXSIM:-}" ]]; then
  timeout "$(cap 220 200)" "$PY" bench/device/maxsim_gpu.py --budget-s "$(cap 150 230)" "${MAXSIM_ARGS[@]}" > "$OUT/maxsim.log" 2>&1
  echo "maxsim exit $? at $(( $(date +%s) - START )) s"
fi
wait $PREP; echo "prepare exit $? at $(( $(date +%s) - START )) s"; tail -n 4 "$OUT/prepare.log"

# 3. onnxruntime CUDA vs PyTorch
PYTHONPATH="$GPU_PATH" timeout "$(cap 240 35)" "$PY" bench/device/gpu_bench.py run --work "$WORK" --out "$OUT" \
  --budget-s "$(cap 220 45)" --parts "$PARTS" > "$OUT/gpu_bench.log" 2>&1
echo "gpu_bench exit $? at $(( $(date +%s) - START )) s"

# 4. the Triton kernel tests, with what is left
if [[ -z "${SKIP_KERNEL_TESTS:-}" ]] && (( $(left) > 30 )); then
  timeout "$(cap 120 5)" "$PY" -m pytest -q -x -p no:cacheprovider tests/kernels/test_maxsim_triton.py > "$OUT/kernel_tests.log" 2>&1
  echo "kernel tests exit $? at $(( $(date +%s) - START )) s: $(tail -n 1 "$OUT/kernel_tests.log")"
fi

echo; echo "== logs' last lines"; tail -n 3 "$OUT/gpu_bench.log"
echo; sed -n '/^== MaxSim/,$p' "$OUT/maxsim.log" 2>/dev/null | cut -c1-160
echo; cat "$OUT"/gpu-*.md 2>/dev/null | cut -c1-400
echo "run_all done in $(( $(date +%s) - START )) s"
