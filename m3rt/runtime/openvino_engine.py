"""OpenVINO on the CPU (the `openvino` extra): m3rt's ONNX graph, three heads inside, read and compiled by
OpenVINO; its compiled form cached on disk (OpenVINO's CACHE_DIR, in m3rt's per-user cache, keyed by the graph's
checksum), so a warm start skips compiling.

Which artifacts it runs, and at what precision:
- int8-static (calibrated int8, QDQ): OpenVINO's int8 kernels, the rest of the graph in bf16 where the CPU has
  it (as the export's fidelity gate measured it, and as OpenVINO itself picks on such CPUs), else f32;
- bf16: the fp32 graph computed in bf16 (the export gated that against fp32);
- fp32: computed in f32, exactly: OpenVINO would pick bf16 by itself on such CPUs, which no gate has measured
  for this artifact, so the precision is always set.
It needs the standard attention spelling (`--attention standard`): on the fused one (com.microsoft
MultiHeadAttention) OpenVINO computed padded batches wrongly. onnxruntime's dynamic int8 graph (precision
int8) it computes wrongly too: those are refused with the reason, never run.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from m3rt.artifact import Manifest
from m3rt.runtime.engine import Engine

# What each artifact precision computes in: OpenVINO's INFERENCE_PRECISION_HINT ("bf16" falls back to f32 on a
# CPU without bf16 arithmetic, which is more exact, not less).
HINT = {"fp32": "f32", "bf16": "bf16", "int8-static": "bf16"}


class OpenVinoEngine(Engine):
    name = "openvino-cpu"
    # As onnxruntime's CPU engine: short texts share the per-call cost up to about this many padded tokens.
    preferred_batch_tokens = 1024

    @classmethod
    def missing(cls) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError as e:
            return f"openvino is not installed ({e}; pip install 'm3rt[openvino]')"
        return None

    @classmethod
    def unsuitable(cls, manifest: Manifest) -> str | None:
        if manifest.precision not in HINT:
            why = {"int8": "onnxruntime's dynamic int8 (DynamicQuantizeMatMul), which OpenVINO computes wrongly; "
                           "export --precision int8-static for OpenVINO",
                   "fp16": "fp16, a GPU precision"}.get(manifest.precision, manifest.precision)
            return f"the artifact's precision is {why}"
        if manifest.attention != "standard":
            return ("OpenVINO needs an artifact exported with --attention standard (the fused attention, "
                    "com.microsoft MultiHeadAttention, gave wrong outputs on padded batches)")
        return None

    def _open(self) -> None:
        self.compiled = compile_graph(self.manifest.graph_path, self.manifest.precision,
                                      self.config.backend_options.intra_op_threads, self.cache_dir())
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        # One infer request per concurrent caller: a request holds its own buffers and is not thread-safe.
        self._requests: queue.SimpleQueue = queue.SimpleQueue()

    def _close(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            return run_compiled(self.compiled, input_ids, attention_mask, outputs, request)
        finally:
            self._requests.put(request)

    def cache_dir(self) -> Path:
        """Compiled graphs, per graph checksum: a new export never reads another's blob."""
        from m3rt.artifact import cache_dir

        root = Path(self.config.backend_options.engine_cache_dir) if self.config.backend_options.engine_cache_dir \
            else cache_dir() / "openvino"
        path = root / self.manifest.graph_sha256[:24]
        path.mkdir(parents=True, exist_ok=True)
        return path


def compile_graph(graph: str | Path, precision: str, threads: int = 0, cache: Path | None = None):
    """The one place a graph is compiled by OpenVINO (the engine, and the exporter's fidelity gate): on the CPU,
    for latency, at the precision the artifact's precision means (HINT)."""
    import openvino as ov

    from m3rt.errors import ArtifactError

    core = ov.Core()
    if cache is not None:
        core.set_property({"CACHE_DIR": str(cache)})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": HINT[precision]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        return core.compile_model(str(graph), "CPU", config)
    except RuntimeError as e:  # OpenVINO's error for a graph it cannot read or compile
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{graph}: OpenVINO cannot compile the graph ({first})") from None


def run_compiled(compiled, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str],
                 request=None) -> dict[str, np.ndarray]:
    request = request or compiled.create_infer_request()
    result = request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
    # A request reuses its output buffers on its next call: copy what is returned.
    return {name: np.array(result[compiled.output(name)], copy=True) for name in outputs}
