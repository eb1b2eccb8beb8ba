"""onnxruntime on the CPU: one InferenceSession over the artifact's graph (opened by ort_session.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m3rt.runtime.engine import Engine


class OrtCpuEngine(Engine):
    name = "onnxruntime-cpu"
    # tokens/s rise with padded tokens per call up to about this (short texts share the per-call cost) and fall
    # beyond (activations leave the caches): bench/results/design-notes.md.
    preferred_batch_tokens = 1024

    def _open(self) -> None:
        from m3rt.runtime.ort_session import open_session

        self.session = open_session(self.manifest.graph_path, self.config, self.config.backend_options.providers)

    def _close(self) -> None:
        self.session = None

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        values = self.session.run(list(outputs), {"input_ids": input_ids, "attention_mask": attention_mask})
        return dict(zip(outputs, values))

    @classmethod
    def unsuitable(cls, manifest) -> str | None:
        return onnx_graph_needed(manifest)

    @classmethod
    def missing(cls) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return f"onnxruntime is not installed ({e})"
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CPUExecutionProvider"
        return None


def onnx_graph_needed(manifest) -> str | None:
    """Why onnxruntime cannot run this artifact's graph (an OpenVINO model), or None."""
    if manifest.graph_format != "onnx":
        return (f"the artifact's graph is an OpenVINO model ({manifest.precision}); onnxruntime reads ONNX only "
                "(pip install 'm3rt[openvino]')")
    return None
