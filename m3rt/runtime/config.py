"""RuntimeConfig: the runtime's knobs (FlagEmbedding's defaults, batching, streaming, integrity), with the
engines' own options in one BackendOptions inside it (threads, devices, caches, and onnxruntime's session
options and providers passed through as given)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

# FlagEmbedding's default token limit for queries and passages.
DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class BackendOptions:
    """What the engines read; M3Runtime(..., intra_op_threads=2) and the like set these too."""

    # onnxruntime threads inside one operator; 0 lets onnxruntime pick (one per core).
    intra_op_threads: int = 0
    # onnxruntime's CPU memory arena: off keeps memory bounded under dynamic shapes (see ort_session.py).
    cpu_memory_arena: bool = False
    # GPU backends: which CUDA device, and where TensorRT engines are cached (default: inside the artifact).
    device_id: int = 0
    engine_cache_dir: str | None = None
    # onnxruntime's escape hatches, applied after m3rt's own settings: SessionOptions attributes by name
    # ({"inter_op_num_threads": 1}), session config entries ({"session.intra_op.allow_spinning": "0"}), and
    # the providers list instead of the backend's own (the first must start, or loading fails).
    session_options: Mapping[str, Any] = field(default_factory=dict)
    session_config: Mapping[str, str] = field(default_factory=dict)
    providers: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "device_id", as_int(self.device_id, "device_id", minimum=0))
        for name in ("session_options", "session_config"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a mapping, got {type(getattr(self, name)).__name__}")
        if self.providers is not None:
            object.__setattr__(self, "providers", tuple(self.providers))


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "auto"
    batch_size: int = 256
    # Padded tokens per engine call (rows x longest row); None: the backend's own (its
    # preferred_batch_tokens). Also bounds memory on long inputs.
    max_batch_tokens: int | None = None
    # None: DEFAULT_MAX_LENGTH, or the artifact's own limit when that is lower.
    query_max_length: int | None = None
    passage_max_length: int | None = None
    return_dense: bool = True
    return_sparse: bool = False
    return_colbert_vecs: bool = False
    # Dense and ColBERT vectors cut to their first truncate_dim dimensions and re-normalised, as upstream.
    truncate_dim: int | None = None
    query_instruction_for_retrieval: str | None = None
    query_instruction_format: str = "{}{}"
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    # Called as progress(texts done, total or None) after every engine call; the CLI draws it.
    progress: Callable[[int, int | None], None] | None = None
    # Texts iter_encode holds (and yields per Encoded chunk) at a time.
    chunk_size: int = 1024
    # iter_encode reads and tokenizes the next chunk while the engine runs the current one. None: on for GPU
    # engines, off on the CPU, where tokenizing is a tiny share of the time and the overlap gained nothing
    # (bench/results/design-notes.md).
    overlap_tokenize: bool | None = None
    # encode and iter_encode through the pipelined executor (runtime/executor.py): a tokenizer pool, the engine
    # (engine.concurrent_calls batches in flight) and the heads on threads of their own, with the same outputs.
    # None: on for GPU engines, whose host work would otherwise idle them; off on the CPU, where the engine
    # already uses every core. When on, overlap_tokenize has no effect (the executor always reads ahead).
    pipelined: bool | None = None
    # Checksums at load: "once" hashes each file in full once per machine and then only when its size, mtime,
    # ctime or inode changed (artifact.VerifiedRecord); "always" every load; "off" never. True means "once".
    verify_checksums: bool | str = "once"
    # An int8 artifact exported on another CPU class: re-measure its fidelity here at load (one small call).
    check_cpu_class: bool = True

    def __post_init__(self):
        for name in ("batch_size", "max_batch_tokens", "query_max_length", "passage_max_length", "chunk_size",
                     "truncate_dim"):
            value = getattr(self, name)
            if value is None and name != "batch_size":
                continue
            object.__setattr__(self, name, as_int(value, name, minimum=1))
        if isinstance(self.verify_checksums, bool):
            object.__setattr__(self, "verify_checksums", "once" if self.verify_checksums else "off")
        if self.verify_checksums not in ("once", "always", "off"):
            raise ValueError(f"verify_checksums must be 'once', 'always' or 'off', got {self.verify_checksums!r}")

    def with_overrides(self, **overrides) -> "RuntimeConfig":
        """A copy with `overrides`; names of BackendOptions fields go to backend_options."""
        own = {f.name for f in fields(self)}
        backend = {f.name for f in fields(BackendOptions)}
        unknown = sorted(set(overrides) - own - backend)
        if unknown:
            raise TypeError(f"unknown runtime option(s) {unknown}; known: {sorted(own | backend)}")
        for_backend = {k: overrides.pop(k) for k in list(overrides) if k in backend}
        if for_backend:
            overrides["backend_options"] = replace(overrides.get("backend_options", self.backend_options), **for_backend)
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
