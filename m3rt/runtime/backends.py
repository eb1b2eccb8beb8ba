"""Backend registry: one row per backend (module, class), tried in order by backend="auto".

Backends import their heavy packages lazily, so an unavailable one costs nothing until asked for.
"""

from __future__ import annotations

import importlib
import logging

from m3rt.artifact import Manifest
from m3rt.errors import BackendError
from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.engine import Engine

log = logging.getLogger("m3rt.runtime")

# name -> (module, engine class); "auto" tries them in this order: GPU backends first, the CPU last.
BACKENDS: dict[str, tuple[str, str]] = {
    "tensorrt": ("m3rt.runtime.tensorrt_engine", "TensorRTEngine"),
    "onnxruntime-tensorrt": ("m3rt.runtime.ort_tensorrt", "OrtTensorrtEngine"),
    "onnxruntime-cuda": ("m3rt.runtime.ort_cuda", "OrtCudaEngine"),
    "onnxruntime-cpu": ("m3rt.runtime.ort_cpu", "OrtCpuEngine"),
}
ALIASES = {"cpu": "onnxruntime-cpu", "cuda": "onnxruntime-cuda", "trt": "tensorrt"}


def _why_not(name: str, manifest: Manifest) -> str | None:
    """Why backend `name` cannot run this artifact here (its packages, the device, the artifact), or None."""
    module = importlib.import_module(BACKENDS[name][0])
    why = module.available()
    if why is None and hasattr(module, "unsuitable"):
        why = module.unsuitable(manifest)
    return why


def create_engine(name: str, manifest: Manifest, config: RuntimeConfig) -> Engine:
    name = ALIASES.get(name, name)
    if name == "auto":
        reasons = []
        for candidate in BACKENDS:
            why = _why_not(candidate, manifest)
            if why is None:
                log.info("backend auto: using %s", candidate)
                return _load(candidate, manifest, config)
            log.info("backend auto: skipped %s: %s", candidate, why)
            reasons.append(f"{candidate}: {why}")
        raise BackendError("no backend can run here: " + "; ".join(reasons))
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; known: auto, {', '.join(BACKENDS)}")
    why = _why_not(name, manifest)
    if why is not None:
        raise BackendError(f"backend {name} cannot start: {why}")
    return _load(name, manifest, config)


def _load(name: str, manifest: Manifest, config: RuntimeConfig) -> Engine:
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(manifest, config)
