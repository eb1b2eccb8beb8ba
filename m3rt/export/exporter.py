"""export(): load the model, trace one ONNX graph with the three heads inside, copy the tokenizer,
validate the graph against PyTorch on a probe batch, and write the manifest with checksums.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from m3rt.artifact import EXTERNAL_DATA, FORMAT_VERSION, GRAPH, INPUT_NAMES, MANIFEST, OUTPUT_NAMES, TOKENIZER, write_manifest
from m3rt.errors import SourceError
from m3rt.export.source import check_source_files, resolve_source

log = logging.getLogger("m3rt.export")

PRECISIONS = ("fp32",)
TOKENIZER_FILES = (TOKENIZER, "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model")
# FlagEmbedding skips these specials in the lexical weights (its tokenizer's cls/eos/pad/unk).
SPARSE_SKIP_ROLES = ("cls_token", "eos_token", "pad_token", "unk_token")
XLMR_SPECIALS = {"cls_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def export(source: str | Path, out: str | Path, *, precision: str = "fp32", opset: int = 17,
           overwrite: bool = False) -> Path:
    """Export `source` (a BAAI/bge-m3-layout directory or hub id) to the artifact directory `out`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported (supported: {', '.join(PRECISIONS)})")
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: m3rt exports with opset >= 17")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: output directory exists and is not empty (pass overwrite=True / --overwrite)")
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"{out}: not an m3rt artifact; refusing to overwrite it")
        shutil.rmtree(out)
    root = resolve_source(source)
    check_source_files(root)
    started = time.perf_counter()

    from m3rt.export.torch_model import load_m3_graph
    from m3rt.export.onnx_export import export_onnx

    log.info("loading %s", root)
    model = load_m3_graph(root)
    config = model.backbone.config
    specials, skip_ids = _special_ids(root, config)
    max_length = _max_length(root, config)

    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, out / name)
    external = export_onnx(model, out / GRAPH, pad_id=specials["pad"], opset=opset)

    log.info("validating the graph against PyTorch on a probe batch")
    validation = _validate(model, out, specials["pad"], max_length)

    tok_cfg = _read_json(root / "tokenizer_config.json")
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(source),
        "model_type": config.model_type,
        "precision": precision,
        "opset": opset,
        "graph": GRAPH,
        "external_data": EXTERNAL_DATA if external else None,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "dims": {
            "hidden": config.hidden_size,
            "colbert": model.colbert.out_features,
            "vocab": config.vocab_size,
            "layers": config.num_hidden_layers,
            "heads": config.num_attention_heads,
        },
        "special_ids": specials,
        "sparse_skip_ids": skip_ids,
        "max_length": max_length,
        "tokenizer": {
            "file": TOKENIZER,
            "clean_up_tokenization_spaces": bool(tok_cfg.get("clean_up_tokenization_spaces", False)),
        },
        "versions": _versions(),
        "validation": validation,
    }
    write_manifest(out, manifest)
    log.info("artifact written to %s in %.1f s", out, time.perf_counter() - started)
    return out


def _validate(model, out: Path, pad_id: int, max_length: int) -> dict:
    import onnxruntime as ort
    import torch

    from m3rt.export.validate import compare, probe_batch
    from m3rt.runtime.tokenize import TextTokenizer

    tokenizer = TextTokenizer(out / TOKENIZER, pad_id)
    ids, mask = probe_batch(tokenizer, max_length)
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), torch.from_numpy(mask))
    reference = {name: t.numpy() for name, t in zip(OUTPUT_NAMES, ref)}
    session = ort.InferenceSession(str(out / GRAPH), providers=["CPUExecutionProvider"])
    graph = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask})))
    report = compare(reference, graph)
    log.info("validation: %s", ", ".join(f"{k} max abs err {v['max_abs_err']:.2e}" for k, v in report.items()))
    return {"probe_batch": list(ids.shape), "probe_lengths": mask.sum(1).tolist(),
            "reference": "pytorch-fp32", "outputs": report}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None


def _special_ids(root: Path, config) -> tuple[dict[str, int], list[int]]:
    """Special token ids from the tokenizer (its special-token map, XLM-R's names by default)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(root / TOKENIZER))
    roles = dict(XLMR_SPECIALS) if config.model_type == "xlm-roberta" else {}
    for source in (_read_json(root / "tokenizer_config.json"), _read_json(root / "special_tokens_map.json")):
        for role in ("cls_token", "eos_token", "pad_token", "unk_token", "sep_token"):
            value = source.get(role)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                roles[role] = value
    ids = {}
    for role, token in roles.items():
        token_id = tok.token_to_id(token)
        if token_id is None:
            raise SourceError(f"{root / TOKENIZER}: special token {token!r} ({role}) is not in the vocabulary")
        ids[role.removesuffix("_token")] = token_id
    if "pad" not in ids:
        raise SourceError(f"{root}: the tokenizer has no pad token")
    if ids["pad"] != config.pad_token_id:
        raise SourceError(f"{root}: pad token id {ids['pad']} differs from config.json pad_token_id {config.pad_token_id}")
    skip = sorted({ids[r.removesuffix("_token")] for r in SPARSE_SKIP_ROLES if r.removesuffix("_token") in ids})
    return ids, skip


def _max_length(root: Path, config) -> int:
    """Usable tokens: RoBERTa positions start after the pad id, so 8194 positions give 8192 tokens."""
    positions = config.max_position_embeddings
    limit = positions - config.pad_token_id - 1 if config.model_type in ("xlm-roberta", "roberta") else positions
    declared = _read_json(root / "tokenizer_config.json").get("model_max_length")
    if isinstance(declared, int) and 0 < declared < limit:
        limit = declared
    return int(limit)


def _versions() -> dict[str, str]:
    versions = {}
    for pkg in ("m3rt", "torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions
