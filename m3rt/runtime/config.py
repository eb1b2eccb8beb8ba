"""RuntimeConfig: every runtime knob in one object (names follow FlagEmbedding's BGEM3FlagModel)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "auto"
    batch_size: int = 256
    # Padded tokens per engine call (rows x longest row); None: the backend's own (engine.batch_tokens:
    # 1024 on the CPU, where bigger calls ran slower, 16384 on GPUs). Also bounds memory on long inputs.
    max_batch_tokens: int | None = None
    query_max_length: int = 512
    passage_max_length: int = 512
    return_dense: bool = True
    return_sparse: bool = False
    return_colbert_vecs: bool = False
    query_instruction_for_retrieval: str | None = None
    query_instruction_format: str = "{}{}"
    # onnxruntime threads inside one operator; 0 lets onnxruntime pick (one per core).
    intra_op_threads: int = 0
    # onnxruntime's CPU memory arena: off keeps memory bounded under dynamic shapes (see ort_cpu.py).
    cpu_memory_arena: bool = False
    # GPU backends: which CUDA device, and where TensorRT engines are cached (default: inside the artifact).
    device_id: int = 0
    engine_cache_dir: str | None = None
    # A progress line on stderr while encoding takes more than a couple of seconds.
    show_progress: bool = False
    # Hash every artifact file against the manifest at load time.
    verify_checksums: bool = True
    # An int8 artifact exported on another CPU class: re-measure its fidelity here at load (one small call).
    check_cpu_class: bool = True

    def __post_init__(self):
        for name in ("batch_size", "max_batch_tokens", "query_max_length", "passage_max_length"):
            value = getattr(self, name)
            if name == "max_batch_tokens" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.intra_op_threads, int) or self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be an integer >= 0, got {self.intra_op_threads!r}")

    def with_overrides(self, **overrides) -> "RuntimeConfig":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown runtime option(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)
