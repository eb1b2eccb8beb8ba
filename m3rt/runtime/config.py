"""RuntimeConfig: every runtime knob in one object (names follow FlagEmbedding's BGEM3FlagModel)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

# FlagEmbedding's default token limit for queries and passages.
DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "auto"
    batch_size: int = 256
    # Padded tokens per engine call (rows x longest row); None: the backend's own (engine.batch_tokens:
    # 1024 on the CPU, where bigger calls ran slower, 16384 on GPUs). Also bounds memory on long inputs.
    max_batch_tokens: int | None = None
    # None: DEFAULT_MAX_LENGTH, or the artifact's own limit when that is lower.
    query_max_length: int | None = None
    passage_max_length: int | None = None
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
    # Called as progress(texts done, total or None) after every engine call; the CLI draws it.
    progress: Callable[[int, int | None], None] | None = None
    # Texts iter_encode holds (and yields per Encoded chunk) at a time.
    chunk_size: int = 1024
    # Hash every artifact file against the manifest at load time.
    verify_checksums: bool = True
    # An int8 artifact exported on another CPU class: re-measure its fidelity here at load (one small call).
    check_cpu_class: bool = True

    def __post_init__(self):
        for name in ("batch_size", "max_batch_tokens", "query_max_length", "passage_max_length", "chunk_size"):
            value = getattr(self, name)
            if value is None and name != "batch_size":
                continue
            object.__setattr__(self, name, as_int(value, name, minimum=1))
        object.__setattr__(self, "intra_op_threads", as_int(self.intra_op_threads, "intra_op_threads", minimum=0))

    def with_overrides(self, **overrides) -> "RuntimeConfig":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown runtime option(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)


def as_int(value, name: str, minimum: int, why: str = "") -> int:
    """`value` as a Python int (numpy integers accepted; bools, floats and strings refused) >= minimum."""
    need = f"{name} must be an integer >= {minimum}{f' ({why})' if why else ''}"
    if isinstance(value, bool):
        raise ValueError(f"{need}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{need}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{need}, got {number}")
    return number
