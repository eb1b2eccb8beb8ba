"""The compared implementations, one class each, behind one interface:

    backend.name; backend.encode(texts, batch_size, max_length) -> {"dense_vecs", "lexical_weights", "colbert_vecs"}

Every backend computes all three outputs on every call. torch and FlagEmbedding are imported only when
the FlagEmbedding backend is built.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
from pathlib import Path

FLAGEMBEDDING = "flagembedding"
PYTORCH = "pytorch"
# Artifact precision of each m3rt backend.
M3RT_PRECISION = {"m3rt-fp32": "fp32", "m3rt-int8": "int8"}
# The first is the default baseline: PyTorch without FlagEmbedding's probe, the conservative one.
BACKENDS = (PYTORCH, FLAGEMBEDDING, *M3RT_PRECISION)
# Packages each backend imports; checked before any model is built, so a missing one fails in seconds.
REQUIRES = {FLAGEMBEDDING: ("FlagEmbedding", "torch"), PYTORCH: ("torch", "transformers"),
            "m3rt-fp32": ("onnxruntime",), "m3rt-int8": ("onnxruntime",)}


def check_names(backends) -> tuple[str, ...]:
    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    names = tuple(backends)
    if not names:
        raise ValueError(f"no backends given; choose from {', '.join(BACKENDS)}")
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(map(repr, unknown))}; known: {', '.join(BACKENDS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"backends repeat a name: {', '.join(names)}")
    return names


def check_installed(backends: tuple[str, ...]) -> None:
    """An ImportError naming every missing package of the requested backends (none is skipped silently)."""
    missing = []
    for name in backends:
        for pkg in REQUIRES[name]:
            if importlib.util.find_spec(pkg) is None:
                missing.append(f"backend {name} needs the {pkg} package")
    if missing:
        raise ImportError("; ".join(missing) + " (install it, or leave the backend out of backends)")


class FlagEmbeddingBackend:
    """FlagEmbedding's BGEM3FlagModel, PyTorch eager fp32 on the CPU: what users run today."""

    name = FLAGEMBEDDING

    def __init__(self, model_dir: Path, threads: int = 0):
        import torch
        from FlagEmbedding import BGEM3FlagModel

        if threads:
            torch.set_num_threads(threads)
        self.model = BGEM3FlagModel(str(model_dir), use_fp16=False, devices="cpu")
        self.threads = torch.get_num_threads()
        # The module whose tqdm bars encode draws (one per call, even for a single batch).
        self._bar_module = inspect.getmodule(type(self.model).encode_single_device)

    def encode(self, texts: list[str], batch_size: int, max_length: int) -> dict:
        with _quiet_bars(self._bar_module):
            return self.model.encode(texts, batch_size=batch_size, max_length=max_length,
                                     return_dense=True, return_sparse=True, return_colbert_vecs=True)


class PyTorchBackend:
    """The PyTorch eager fp32 computation FlagEmbedding runs (transformers' fast tokenizer, the same model
    with SDPA attention, one forward per batch) without FlagEmbedding's extra first-batch probe: the
    conservative baseline for ratios."""

    name = PYTORCH

    def __init__(self, model_dir: Path, threads: int = 0):
        import torch
        from transformers import AutoTokenizer

        from m3rt.export.torch_model import load_m3_graph

        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.model = load_m3_graph(Path(model_dir), attention="sdpa")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        t = self.tokenizer  # FlagEmbedding's unused_tokens
        self.skip = [i for i in (t.cls_token_id, t.eos_token_id, t.pad_token_id, t.unk_token_id) if i is not None]

    def encode(self, texts: list[str], batch_size: int, max_length: int) -> dict:
        import numpy as np
        import torch

        from m3rt.runtime import heads

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        dense, lexical, colbert = [None] * len(texts), [None] * len(texts), [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=max_length, return_tensors="pt")
                d, s, c = self.model(batch["input_ids"], batch["attention_mask"])
                ids, lengths = batch["input_ids"].numpy(), batch["attention_mask"].sum(1).numpy()
                for i, row, lw, cv in zip(idx, d.numpy(), heads.lexical_weights(s.numpy(), ids, lengths, self.skip),
                                          heads.colbert_rows(c.numpy(), lengths)):
                    dense[i], lexical[i], colbert[i] = row, lw, cv
        return {"dense_vecs": np.stack(dense), "lexical_weights": lexical, "colbert_vecs": colbert}


class M3RuntimeBackend:
    """m3rt's M3Runtime on an artifact, onnxruntime on the CPU."""

    def __init__(self, name: str, artifact_dir: Path, threads: int = 0):
        from m3rt import M3Runtime

        self.name = name
        # Named, not "auto": on a machine with a GPU, auto would pick it and this is a CPU benchmark.
        self.runtime = M3Runtime(artifact_dir, backend="onnxruntime-cpu", intra_op_threads=threads)
        self.threads = threads

    def encode(self, texts: list[str], batch_size: int, max_length: int) -> dict:
        return self.runtime.encode(texts, batch_size=batch_size, max_length=max_length,
                                   return_dense=True, return_sparse=True, return_colbert_vecs=True)


def make_backend(name: str, model_dir: Path, artifacts: dict[str, Path], threads: int):
    if name == FLAGEMBEDDING:
        return FlagEmbeddingBackend(model_dir, threads)
    if name == PYTORCH:
        return PyTorchBackend(model_dir, threads)
    return M3RuntimeBackend(name, artifacts[name], threads)


@contextlib.contextmanager
def _quiet_bars(module):
    """Swap the module's tqdm/trange for silent ones during one call (FlagEmbedding has no switch for them).

    Swapped per call, not once, so other users of FlagEmbedding in the process keep their bars.
    """
    saved = {k: getattr(module, k) for k in ("tqdm", "trange") if module is not None and hasattr(module, k)}

    def silent(make):
        def bar(*args, **kwargs):
            kwargs["disable"] = True
            return make(*args, **kwargs)
        return bar

    for k, make in saved.items():
        setattr(module, k, silent(make))
    try:
        yield
    finally:
        for k, make in saved.items():
            setattr(module, k, make)
