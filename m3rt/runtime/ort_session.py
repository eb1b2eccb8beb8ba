"""The one place an onnxruntime InferenceSession is opened (the CPU and CUDA engines, and the exporter's checks):
m3rt's session options, the providers asked for, and the check that the first of them really started."""

from __future__ import annotations

from pathlib import Path

from m3rt.errors import ArtifactError, BackendError

X64_QUANT_PRECISION = "session.x64quantprecision"


def open_session(graph: str | Path, config, providers: list | None = None):
    """A session over `graph` with session_options(config) on `providers` (default: the CPU). A graph
    onnxruntime cannot load is an ArtifactError; a first provider that is not installed, or that onnxruntime
    replaced by a later one (it falls back silently, e.g. when CUDA libraries are missing), a BackendError."""
    import onnxruntime as ort

    providers = list(providers or ["CPUExecutionProvider"])
    first = provider_name(providers[0])
    have = ort.get_available_providers()
    for p in providers:
        if provider_name(p) not in have:
            raise BackendError(f"providers: onnxruntime {ort.__version__} has no {provider_name(p)} here "
                               f"(it has {', '.join(have)})")
    options = session_options(config)  # a bad pass-through setting is the caller's ValueError, not the graph's
    preload = _preload_cuda_libraries(ort) if first != "CPUExecutionProvider" else ""
    try:
        session = ort.InferenceSession(str(graph), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime's own error types: a corrupt or foreign graph
        raise ArtifactError(f"{graph}: onnxruntime cannot load the graph on {first} ({e})") from None
    if session.get_providers()[0] != first:
        hint = "" if first == "CPUExecutionProvider" else (
            "; check that the CUDA / cuDNN libraries matching onnxruntime-gpu are installed"
            + (f"; loading them said: {preload}" if preload else ""))
        raise BackendError(f"{first} did not start (onnxruntime runs {session.get_providers()} instead){hint}")
    return session


def provider_name(provider) -> str:
    """A providers entry is a name or a (name, options) pair."""
    return provider[0] if isinstance(provider, tuple) else provider


def session_options(config):
    """Options for dynamic shapes: every call has a new (batch, length).

    - The CPU memory arena is off by default: it grows by powers of two to the largest call seen and never
      shrinks, so one long input would pin its peak for the life of the process; without it memory follows
      each call, at the same latency within noise.
    - Memory patterns (pre-planned buffers per input shape) only pay off for repeated shapes: off.
    - Graph optimisation level ALL (onnxruntime's own fusions: Gelu, SkipLayerNorm, DynamicQuantizeMatMul):
      best or equal to BASIC at bge-m3 shape.
    The figures behind each: bench/results/design-notes.md.
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
        # setting makes it convert the s8 weights to u8 at load and use exact U8U8 kernels (the int8 export
        # gate fails without it on AVX2). With VNNI it changes no number and costs speed, so it is set only
        # here (bench/results/design-notes.md). Float graphs are not affected.
        config_entries.setdefault(X64_QUANT_PRECISION, "1")
    for key, value in config_entries.items():
        opts.add_session_config_entry(str(key), str(value))
    return opts


def int8_saturates_here() -> bool:
    """An x86-64 CPU whose int8 products onnxruntime sums with saturation (no VNNI / AMX): runtime/cpu.py."""
    from m3rt.runtime import cpu

    info = cpu.detect()
    return info.arch.lower() in ("x86_64", "amd64") and not info.int8_exact


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
