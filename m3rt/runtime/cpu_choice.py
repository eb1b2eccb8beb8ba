"""Which CPU engine runs an artifact here, fastest first: an order per artifact precision (what the artifact may
run on at all) and CPU class (which of those measured faster), from the side-by-side runs committed in
bench/results; backend="auto" tries the CPU engines in this order after the GPU ones, and says why."""

from __future__ import annotations

# Engines able to compute each precision as its export gated it, fastest first where no class says otherwise.
# fp32: onnxruntime and OpenVINO (f32) measured within noise of each other, onnxruntime stays the default;
# bf16: OpenVINO computes it in bf16, onnxruntime in fp32 (exact, slower): the fallback without openvino;
# int8-static: an OpenVINO model, which onnxruntime cannot read; int8: onnxruntime's own dynamic int8.
ORDER = {
    "fp32": ("onnxruntime-cpu", "openvino-cpu"),
    "bf16": ("openvino-cpu", "onnxruntime-cpu"),
    "int8-static": ("openvino-cpu",),
    "int8": ("onnxruntime-cpu",),
    "fp16": ("onnxruntime-cpu",),
}
# Where the order rests on a measurement: (precision) -> the results file and what it showed.
EVIDENCE = {
    "fp32": "bench/results/cpu-engines.md: onnxruntime fp32 and OpenVINO f32 within noise at 128 and 512 tokens",
    "bf16": "bench/results/cpu-engines.md: OpenVINO bf16 about 1.8x onnxruntime fp32 on an AVX512-BF16 CPU",
    "int8-static": "bench/results/cpu-engines.md: OpenVINO int8-static 1.4-2x onnxruntime's dynamic int8",
}
# Per CPU class, where a measurement there ordered the engines otherwise: (class, precision) -> order.
BY_CLASS: dict[tuple[str, str], tuple[str, ...]] = {}


def cpu_order(precision: str, cpu_class: str) -> tuple[str, ...]:
    return BY_CLASS.get((cpu_class, precision), ORDER.get(precision, ("onnxruntime-cpu",)))


def why(precision: str, cpu_class: str) -> str:
    order = cpu_order(precision, cpu_class)
    return f"{precision} on {cpu_class}: {' > '.join(order)}" + (
        f" ({EVIDENCE[precision]})" if precision in EVIDENCE else "")
