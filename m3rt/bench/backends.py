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
# Artifact precision of each m3rt backend (run by the engine backend="auto" picks for it on this CPU).
M3RT_PRECISION = {"m3rt-fp32": "fp32", "m3rt-int8": "int8", "m3rt-int8-static": "int8-static", "m3rt-bf16": "bf16"}
# The peers a CPU user is pointed to: sentence-transformers' backends on the same weights (CLS pooling and
# normalisation, bge-m3's dense vector; dense only): name -> (backend, its model file, how it is made).
SENTENCE_TRANSFORMERS = {
    "st-onnx": ("onnx", "onnx/model.onnx", None),
    "st-onnx-int8": ("onnx", None, "dynamic-int8"),  # its dynamic int8 export for this CPU (avx512_vnni / avx2)
    "st-openvino": ("openvino", "openvino/openvino_model.xml", None),  # OpenVINO picks bf16 where the CPU has it
    "st-openvino-int8": ("openvino", "openvino/openvino_model_qint8_quantized.xml", "static-int8"),
}
# The first is the default baseline: PyTorch without FlagEmbedding's probe, the conservative one.
BACKENDS = (PYTORCH, FLAGEMBEDDING, "m3rt-fp32", "m3rt-int8")
KNOWN = (*BACKENDS, "m3rt-int8-static", "m3rt-bf16", *SENTENCE_TRANSFORMERS)
# Packages each backend imports; checked before any model is built, so a missing one fails in seconds.
REQUIRES = {FLAGEMBEDDING: ("FlagEmbedding", "torch"), PYTORCH: ("torch", "transformers"),
            "m3rt-fp32": ("onnxruntime",), "m3rt-int8": ("onnxruntime",),
            "m3rt-int8-static": ("openvino", "nncf"), "m3rt-bf16": ("openvino",),
            **{n: ("sentence_transformers", "optimum.intel" if b == "openvino" else "optimum.onnxruntime")
               for n, (b, _, _) in SENTENCE_TRANSFORMERS.items()}}


def check_names(backends) -> tuple[str, ...]:
    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    names = tuple(backends)
    if not names:
        raise ValueError(f"no backends given; choose from {', '.join(BACKENDS)}")
    unknown = [b for b in names if b not in KNOWN]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(map(repr, unknown))}; known: {', '.join(KNOWN)}")
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
    heads = 3

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
    heads = 3

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
    """m3rt's M3Runtime on an artifact, on the CPU engine backend="auto" picks for it here."""

    heads = 3

    def __init__(self, name: str, artifact_dir: Path, threads: int = 0):
        from m3rt import M3Runtime
        from m3rt.artifact import read_manifest
        from m3rt.runtime import cpu
        from m3rt.runtime.backends import why_not
        from m3rt.runtime.cpu_choice import cpu_order

        self.name = name
        # A CPU engine by name, not "auto": on a machine with a GPU, auto would pick it and this is a CPU benchmark.
        order = cpu_order(read_manifest(artifact_dir, verify="off").precision, cpu.detect().cls)
        engine = next((e for e in order if why_not(e) is None), order[0])
        self.runtime = M3Runtime(artifact_dir, backend=engine, intra_op_threads=threads)
        self.threads = threads

    def encode(self, texts: list[str], batch_size: int, max_length: int) -> dict:
        return self.runtime.encode(texts, batch_size=batch_size, max_length=max_length,
                                   return_dense=True, return_sparse=True, return_colbert_vecs=True)


class SentenceTransformersBackend:
    """A sentence-transformers model of the same weights on one of its backends (dense only, as it computes)."""

    heads = 1

    def __init__(self, name: str, model_dir: Path, work_dir: Path, threads: int = 0):
        from sentence_transformers import SentenceTransformer

        backend, file_name, _ = SENTENCE_TRANSFORMERS[name]
        self.name, self.threads = name, threads
        if threads:
            import torch

            torch.set_num_threads(threads)
        folder = peer_model(name, model_dir, work_dir)
        kwargs = {"file_name": file_name or _dynamic_int8_file()} if name != "st-openvino" else {}
        self.model = SentenceTransformer(str(folder), backend=backend, device="cpu", model_kwargs=kwargs)

    def encode(self, texts: list[str], batch_size: int, max_length: int) -> dict:
        self.model.max_seq_length = max_length
        dense = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                  show_progress_bar=False)
        return {"dense_vecs": dense, "lexical_weights": None, "colbert_vecs": None}


def _dynamic_int8_file() -> str:
    from m3rt.runtime import cpu

    return f"onnx/model_qint8_{'avx512_vnni' if cpu.detect().int8_exact else 'avx2'}.onnx"


def peer_model(name: str, model_dir: Path, work_dir: Path) -> Path:
    """The sentence-transformers folder of the model (CLS pooling + normalisation) with the files `name` needs,
    made once under work_dir/st (their own exporters: optimum's ONNX and OpenVINO exports, onnxruntime's dynamic
    int8, NNCF's static int8 calibrated on m3rt's calibration text)."""
    from sentence_transformers import SentenceTransformer, models

    folder = work_dir / "st"
    if not (folder / "modules.json").is_file():
        module = models.Transformer(str(model_dir), max_seq_length=512)
        pooling = models.Pooling(module.get_word_embedding_dimension(), pooling_mode="cls")
        SentenceTransformer(modules=[module, pooling, models.Normalize()], device="cpu").save(str(folder))
    backend, file_name, made = SENTENCE_TRANSFORMERS[name]
    if (folder / (file_name or _dynamic_int8_file())).is_file():
        return folder
    model = SentenceTransformer(str(folder), backend=backend, device="cpu")
    fp32 = "onnx/model.onnx" if backend == "onnx" else "openvino/openvino_model.xml"
    if not (folder / fp32).is_file():
        model.save_pretrained(str(folder))  # the backend's fp32 export
    if made == "dynamic-int8":
        from sentence_transformers.backend import export_dynamic_quantized_onnx_model

        export_dynamic_quantized_onnx_model(model, "avx512_vnni" if "avx512_vnni" in _dynamic_int8_file() else "avx2",
                                            str(folder))
    elif made == "static-int8":
        _static_int8_peer(model, folder)
    return folder


def _static_int8_peer(model, folder: Path) -> None:
    """sentence-transformers' static int8 OpenVINO export (NNCF, its defaults), calibrated on m3rt's calibration
    text given as a local dataset (no hub)."""
    import csv

    from optimum.intel import OVQuantizationConfig
    from sentence_transformers.backend import export_static_quantized_openvino_model

    from m3rt.export.calibration import read_lines

    data = folder / "calibration"
    data.mkdir(exist_ok=True)
    with open(data / "train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence"])
        lines = read_lines()
        for i in range(300):  # runs of consecutive lines, as m3rt's own calibration builds its texts
            writer.writerow([" ".join(lines[(i + k) % len(lines)] for k in range(1 + i % 4))])
    export_static_quantized_openvino_model(model, OVQuantizationConfig(), str(folder), dataset_name=str(data),
                                           dataset_config_name="default", dataset_split="train",
                                           column_name="sentence")


def make_backend(name: str, model_dir: Path, artifacts: dict[str, Path], threads: int, work_dir: Path | None = None):
    if name == FLAGEMBEDDING:
        return FlagEmbeddingBackend(model_dir, threads)
    if name == PYTORCH:
        return PyTorchBackend(model_dir, threads)
    if name in SENTENCE_TRANSFORMERS:
        return SentenceTransformersBackend(name, model_dir, work_dir, threads)
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
