"""onnxruntime on an NVIDIA GPU: the CUDA execution provider, with IO binding.

A plain session.run copies every output back to the host, all three heads included, and was dominated by
host-device copies upstream (FlagEmbedding #987). Here the inputs are copied to the device once, only the
outputs asked for are bound (on the device), and only those come back.
NOT YET RUN ON A GPU (see README, "What has run where").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m3rt.artifact import Manifest
from m3rt.errors import ArtifactError, BackendError
from m3rt.runtime.config import RuntimeConfig

PROVIDER = "CUDAExecutionProvider"


class OrtCudaEngine:
    name = "onnxruntime-cuda"
    batch_tokens = 16384

    def __init__(self, manifest: Manifest, config: RuntimeConfig):
        self.session = _session(manifest, config, self.providers(manifest, config))
        self.device_id = config.device_id

    def providers(self, manifest: Manifest, config: RuntimeConfig) -> list:
        return [(PROVIDER, {"device_id": config.device_id, "arena_extend_strategy": "kSameAsRequested"})]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(attention_mask))
        for name in outputs:
            binding.bind_output(name, "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        return dict(zip(outputs, binding.copy_outputs_to_cpu()))


def _session(manifest: Manifest, config: RuntimeConfig, providers: list):
    import onnxruntime as ort

    from m3rt.runtime.ort_cpu import session_options

    wanted = providers[0][0]
    preload = _preload_cuda_libraries(ort)
    try:
        session = ort.InferenceSession(str(manifest.graph_path), sess_options=session_options(config),
                                       providers=providers)
    except Exception as e:  # onnxruntime's own error types
        raise ArtifactError(f"{manifest.graph_path}: onnxruntime cannot load the graph on {wanted} ({e})") from None
    # onnxruntime falls back to the CPU silently when a provider fails to start (missing CUDA libraries).
    if session.get_providers()[0] != wanted:
        raise BackendError(f"{wanted} did not start (onnxruntime fell back to {session.get_providers()}); "
                           "check that the CUDA / cuDNN libraries matching onnxruntime-gpu are installed"
                           + (f"; loading them said: {preload}" if preload else ""))
    return session


def _preload_cuda_libraries(ort) -> str:
    """Load the CUDA / cuDNN libraries of the nvidia-* wheels (onnxruntime-gpu[cuda,cudnn]) before the
    session, as onnxruntime >= 1.21 asks; a no-op where torch has loaded them. Returns what it printed."""
    import contextlib
    import io

    if not hasattr(ort, "preload_dlls"):
        return ""
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        try:
            ort.preload_dlls()
        except Exception as e:  # noqa: BLE001 - a missing library shows again, named, when the session starts
            print(f"{type(e).__name__}: {e}")
    return " ".join(said.getvalue().split())


def available() -> str | None:
    """None when this backend can run here, else why not."""
    return provider_missing(PROVIDER)


def unsuitable(manifest: Manifest) -> str | None:
    if manifest.precision == "int8":
        return "int8 artifacts are for the CPU (onnxruntime has no CUDA kernels for dynamic quantisation)"
    return None


def provider_missing(provider: str) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return f"onnxruntime is not installed ({e})"
    if provider not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no {provider} "
                "(install onnxruntime-gpu instead of onnxruntime, on a machine with an NVIDIA GPU)")
    return None
