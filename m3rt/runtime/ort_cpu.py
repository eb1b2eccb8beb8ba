"""onnxruntime on the CPU: one InferenceSession over the artifact's graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m3rt.errors import ArtifactError
from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.engine import Engine


class OrtCpuEngine(Engine):
    name = "onnxruntime-cpu"
    # Measured at bge-m3 shape on 2 cores: tokens/s rise up to ~256-1024 padded tokens per call (short texts
    # share the per-call cost) and fall beyond (2048: -20%, activations leave the caches).
    preferred_batch_tokens = 1024

    def _open(self) -> None:
        import onnxruntime as ort

        providers = list(self.config.backend_options.providers or ["CPUExecutionProvider"])
        check_providers_installed(providers)
        opts = session_options(self.config)
        try:
            self.session = ort.InferenceSession(str(self.manifest.graph_path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime's own error types: a corrupt or foreign graph
            raise ArtifactError(f"{self.manifest.graph_path}: onnxruntime cannot load the graph ({e})") from None
        check_first_provider(self.session, providers)

    def _close(self) -> None:
        self.session = None

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        values = self.session.run(list(outputs), {"input_ids": input_ids, "attention_mask": attention_mask})
        return dict(zip(outputs, values))

    @classmethod
    def missing(cls) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return f"onnxruntime is not installed ({e})"
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CPUExecutionProvider"
        return None


def session_options(config: RuntimeConfig):
    """Options for dynamic shapes: every call has a new (batch, length).

    - The CPU memory arena is off by default: it grows by powers of two to the largest call seen and never
      shrinks, so one long input would pin its peak for the life of the process. Without it, memory follows
      each call (measured at bge-m3 shape, one 8192-token text: peak RSS 3.2 -> 2.5 GB fp32, 2.2 -> 1.4 GB
      int8) and the latency at 128 / 512 tokens is the same within noise.
    - Memory patterns (pre-planned buffers per input shape) only pay off for repeated shapes: off.
    - Graph optimisation level ALL (onnxruntime's own fusions: Gelu, SkipLayerNorm, DynamicQuantizeMatMul)
      measured best or equal at bge-m3 shape, batch 1, 128 / 512 tokens: fp32 0.312 / 1.255 s against
      0.325 / 1.316 s at BASIC; int8 0.133 / 0.570 s against 0.143 / 0.646 s. (The offline
      onnxruntime.transformers fusions were slower, ../shared/MEASURED.md; m3rt does not use them.)
    """
    import onnxruntime as ort

    options = config.backend_options
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = options.cpu_memory_arena
    opts.enable_mem_pattern = False
    if options.intra_op_threads:
        opts.intra_op_num_threads = options.intra_op_threads
    for name, value in options.session_options.items():  # the pass-through, after m3rt's own settings
        if name.startswith("_") or not hasattr(opts, name) or callable(getattr(opts, name)):
            raise ValueError(f"session_options: onnxruntime's SessionOptions has no setting {name!r}")
        try:
            setattr(opts, name, value)
        except (TypeError, AttributeError) as e:
            raise ValueError(f"session_options: {name}={value!r} refused by onnxruntime ({e})") from None
    config_entries = dict(options.session_config)
    if int8_saturates_here():
        # Without VNNI, onnxruntime's U8S8 int8 kernels (VPMADDUBSW) saturate their int16 pair sums; this
        # setting makes it convert the s8 weights to u8 at load and use exact U8U8 kernels. Measured with
        # AVX2-only kernels (bge-m3 width, 6 layers, 1 x 128): 76 -> 92 ms, and the tiny model's int8 export
        # gate, failing at sparse_max_rel_err 0.27 without it, passes. With VNNI it changes no number and
        # halves int8 speed (35 -> 74 ms), so it is set only here. Float graphs are not affected.
        config_entries.setdefault(X64_QUANT_PRECISION, "1")
    for key, value in config_entries.items():
        opts.add_session_config_entry(str(key), str(value))
    return opts


X64_QUANT_PRECISION = "session.x64quantprecision"


def int8_saturates_here() -> bool:
    """An x86-64 CPU whose int8 products onnxruntime sums with saturation (no VNNI / AMX): runtime/cpu.py."""
    from m3rt.runtime import cpu

    info = cpu.detect()
    return info.arch.lower() in ("x86_64", "amd64") and not info.int8_exact


def check_providers_installed(providers: list) -> None:
    import onnxruntime as ort

    from m3rt.errors import BackendError

    have = ort.get_available_providers()
    for p in providers:
        name = p[0] if isinstance(p, tuple) else p
        if name not in have:
            raise BackendError(f"providers: onnxruntime {ort.__version__} has no {name} here (it has {', '.join(have)})")


def check_first_provider(session, providers: list) -> None:
    """onnxruntime falls back to later providers (or the CPU) silently when the first fails to start."""
    first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if session.get_providers()[0] != first:
        from m3rt.errors import BackendError

        raise BackendError(f"{first} did not start (onnxruntime runs {session.get_providers()} instead)")
