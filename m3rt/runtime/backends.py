"""Backend registry: one row per backend (module, engine class), tried in order by backend="auto".

Backend modules import their heavy packages lazily, so an unavailable one costs nothing until asked for.
"""

from __future__ import annotations

import importlib
import logging

from m3rt.artifact import Manifest
from m3rt.errors import BackendError
from m3rt.runtime.engine import Engine

log = logging.getLogger("m3rt.runtime")

# name -> (module, engine class). "auto" tries the GPU backends in this order, then the CPU ones in the order
# runtime/cpu_choice.py gives for the artifact's precision on this CPU class.
BACKENDS: dict[str, tuple[str, str]] = {
    "tensorrt": ("m3rt.runtime.tensorrt_engine", "TensorRTEngine"),
    "onnxruntime-tensorrt": ("m3rt.runtime.ort_tensorrt", "OrtTensorrtEngine"),
    "onnxruntime-cuda": ("m3rt.runtime.ort_cuda", "OrtCudaEngine"),
    "onnxruntime-cpu": ("m3rt.runtime.ort_cpu", "OrtCpuEngine"),
    "openvino-cpu": ("m3rt.runtime.openvino_engine", "OpenVinoEngine"),
}
ALIASES = {"cpu": "onnxruntime-cpu", "cuda": "onnxruntime-cuda", "trt": "tensorrt", "openvino": "openvino-cpu"}
# "auto-gpu" (what devices="cuda:N" asks for): "auto" among these only.
GPU_BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda")


def auto_order(manifest: Manifest) -> tuple[str, ...]:
    """The GPU backends, then the CPU engines fastest first for this artifact's precision on this CPU class."""
    from m3rt.runtime import cpu
    from m3rt.runtime.cpu_choice import cpu_order, why

    cls = cpu.detect().cls
    log.debug("backend auto: CPU engines for %s", why(manifest.precision, cls))
    return GPU_BACKENDS + cpu_order(manifest.precision, cls)


def is_gpu_backend(name: str) -> bool:
    name = ALIASES.get(name, name)
    return name == "auto-gpu" or name in GPU_BACKENDS


def engine_class(name: str) -> type[Engine]:
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def why_not(name: str, manifest: Manifest | None = None) -> str | None:
    """Why backend `name` cannot run here (its packages, the device) or, given one, this artifact; or None."""
    cls = engine_class(name)
    return cls.why_not(manifest) if manifest is not None else cls.missing()


def create_engine(name: str, manifest: Manifest, config) -> Engine:
    """The named backend's engine, opened; "auto": the first backend that can run the artifact here."""
    name = ALIASES.get(name, name)
    if name in ("auto", "auto-gpu"):
        reasons = []
        for candidate in (auto_order(manifest) if name == "auto" else GPU_BACKENDS):
            why = why_not(candidate, manifest)
            if why is None:
                log.info("backend auto: using %s", candidate)
                return engine_class(candidate)(manifest, config).open()
            log.debug("backend auto: skipped %s: %s", candidate, why)
            reasons.append(f"{candidate}: {why}")
        what = "backend" if name == "auto" else "GPU backend (devices asks for a GPU)"
        raise BackendError(f"no {what} can run here: " + "; ".join(reasons))
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; known: auto, auto-gpu, {', '.join(BACKENDS)}")
    why = why_not(name, manifest)
    if why is not None:
        raise BackendError(f"backend {name} cannot start: {why}")
    return engine_class(name)(manifest, config).open()
