"""export(): load the model, trace one ONNX graph with the three heads inside, copy the tokenizer,
validate the graph against PyTorch on a probe batch, reduce its precision if asked (checked against the
fp32 graph), and write the manifest with checksums.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from m3rt.artifact import (CPU_DEPENDENT, EXTERNAL_DATA, GRAPH, IR_GRAPH, NEEDS_STANDARD_ATTENTION, OUTPUT_NAMES,
                           PRECISIONS, PROBE, TOKENIZER, Dims, new_manifest,
                           write_manifest)
from m3rt.errors import SourceError
from m3rt.export.attention import ATTENTION_KINDS
from m3rt.export.source import check_source_files, resolve_source
from m3rt.export.staging import Staging, check_writable_target, staged_artifact
from m3rt.runtime.cpu import detect as detect_cpu
from m3rt.runtime.tokenize import TextTokenizer

log = logging.getLogger("m3rt.export")

TOKENIZER_FILES = (TOKENIZER, "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model")
# FlagEmbedding skips these specials in the lexical weights (its tokenizer's cls/eos/pad/unk).
SPARSE_SKIP_ROLES = ("cls_token", "eos_token", "pad_token", "unk_token")
# The shortest token limit an artifact may declare: below it a model cannot read a sentence.
MIN_MAX_LENGTH = 16
XLMR_SPECIALS = {"cls_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def export(source: str | Path, out: str | Path, *, precision: str = "fp32", opset: int = 17,
           overwrite: bool = False, enforce_fidelity: bool = True, attention: str | None = None,
           calibration: str | Path | None = None) -> Path:
    """Export `source` (a BAAI/bge-m3-layout directory or hub id) to the artifact directory `out`.

    A reduced-precision graph (int8) past its fidelity thresholds fails the export; with
    enforce_fidelity=False it is only recorded (and logged), for benchmark models with random weights.
    attention: "fused" (onnxruntime's MultiHeadAttention, flash on the CPU; the default) or "standard" (plain ONNX
    ops, what TensorRT and OpenVINO read: the default and the only choice for int8-static and bf16); see
    export/attention.py. calibration: a file of texts (one per line) for int8-static, instead of m3rt's own."""
    if attention is None:
        attention = "standard" if precision in NEEDS_STANDARD_ATTENTION else "fused"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported (supported: {', '.join(PRECISIONS)})")
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention {attention!r} is not one of {', '.join(ATTENTION_KINDS)}")
    if precision in NEEDS_STANDARD_ATTENTION and attention != "standard":
        raise ValueError(f"precision {precision} runs on OpenVINO, which needs --attention standard (it computed the "
                         "fused attention wrongly on padded batches)")
    if calibration is not None and precision != "int8-static":
        raise ValueError("calibration text applies to --precision int8-static only")
    if calibration is not None:
        from m3rt.export.calibration import read_lines

        read_lines(calibration)  # a bad file fails now, not after the model is traced
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: m3rt exports with opset >= 17")
    local = Path(source).expanduser()
    # Checked before a download too, not only once the source is resolved.
    check_writable_target(Path(out).absolute(), overwrite=overwrite, source=local if local.is_dir() else None)
    root = resolve_source(source)
    check_source_files(root)
    with staged_artifact(out, overwrite=overwrite, source=root) as staging:
        _export_into(source, root, staging, precision, opset, enforce_fidelity, attention, calibration)
    return Path(out)


def _export_into(source, root: Path, staging: Staging, precision: str, opset: int, enforce_fidelity: bool,
                 attention: str, calibration) -> None:
    """Write the whole artifact into staging.root (staged_artifact moves it to OUT once this returns)."""
    started = time.perf_counter()
    out, scratch = staging.root, staging.scratch

    from m3rt.export.torch_model import load_m3_graph
    from m3rt.export.onnx_export import export_onnx

    log.info("loading %s", root)
    model = load_m3_graph(root)
    config = model.backbone.config
    specials, skip_ids = _special_ids(root, config)
    max_length = _max_length(root, config)
    colbert_dim = model.colbert.out_features

    for name in TOKENIZER_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, out / name)
    tokenizer = TextTokenizer(out / TOKENIZER, specials["pad"], limit=max_length)
    if precision == "fp32":
        external = export_onnx(model, out / GRAPH, pad_id=specials["pad"], opset=opset, attention=attention,
                               work_dir=scratch)
        validation = _validate(model, out / GRAPH, tokenizer, max_length)
    else:
        # The fp32 graph is the reference of the reduced one; it stays in the scratch folder.
        fp32_graph = scratch / "fp32" / GRAPH
        fp32_graph.parent.mkdir()
        export_onnx(model, fp32_graph, pad_id=specials["pad"], opset=opset, attention=attention, work_dir=scratch)
        validation = _validate(model, fp32_graph, tokenizer, max_length)
        del model  # the quantiser holds its own copy of the weights
        graph = out / (IR_GRAPH if precision == "int8-static" else GRAPH)
        external = _reduce(fp32_graph, graph, precision, scratch, tokenizer, max_length, calibration)
        validation[precision] = _check_fidelity(fp32_graph, graph, precision, tokenizer, max_length,
                                                skip_ids, enforce_fidelity)
        if calibration is not None:
            validation[precision]["calibration"] = Path(calibration).name
        if precision in CPU_DEPENDENT:
            _write_probe(fp32_graph, out / PROBE, tokenizer)
    tok_cfg = _read_json(root / "tokenizer_config.json")
    manifest = new_manifest(
        source=str(source), model_type=config.model_type, precision=precision, opset=opset, attention=attention,
        external=bool(external),
        dims=Dims(hidden=config.hidden_size, colbert=colbert_dim, vocab=config.vocab_size,
                  layers=config.num_hidden_layers, heads=config.num_attention_heads),
        special_ids=specials, sparse_skip_ids=skip_ids, max_length=max_length,
        clean_up_tokenization_spaces=bool(tok_cfg.get("clean_up_tokenization_spaces", False)),
        versions=_versions(),
        export_cpu={k: v for k, v in detect_cpu().as_dict().items() if k in ("class", "model", "flags")},
        validation=validation)
    _readable_by_all(out)
    write_manifest(out, manifest)
    log.info("artifact written to %s in %.1f s", staging.out, time.perf_counter() - started)


def _validate(model, graph_path: Path, tokenizer, max_length: int) -> dict:
    import torch

    from m3rt.export.validate import compare, validation_batch

    log.info("validating the fp32 graph against PyTorch on a probe batch")
    ids, mask = validation_batch(tokenizer, max_length)
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), torch.from_numpy(mask))
    reference = {name: t.numpy() for name, t in zip(OUTPUT_NAMES, ref)}
    graph = _run_graph(graph_path, ids, mask)
    report = compare(reference, graph)
    log.info("validation: %s", ", ".join(f"{k} max abs err {v['max_abs_err']:.2e}" for k, v in report.items()))
    return {"probe_batch": list(ids.shape), "probe_lengths": mask.sum(1).tolist(),
            "reference": "pytorch-fp32", "outputs": report}


def _reduce(fp32_graph: Path, out_graph: Path, precision: str, work_dir: Path, tokenizer, max_length: int,
            calibration) -> bool:
    """Write the reduced-precision graph; True when its weights went to a file of their own."""
    if precision == "int8":
        from m3rt.export.quantize import quantize_int8

        quantize_int8(fp32_graph, out_graph, work_dir=work_dir)
    elif precision == "int8-static":
        from m3rt.export.static_int8 import quantize_static

        quantize_static(fp32_graph, out_graph, tokenizer, max_length, calibration)
        return True
    elif precision == "bf16":  # the fp32 graph itself: OpenVINO computes it in bf16
        shutil.copy2(fp32_graph, out_graph)
        if (fp32_graph.parent / EXTERNAL_DATA).is_file():
            shutil.copy2(fp32_graph.parent / EXTERNAL_DATA, out_graph.parent / EXTERNAL_DATA)
    else:
        from m3rt.export.half import convert_fp16

        convert_fp16(fp32_graph, out_graph)
    return (out_graph.parent / EXTERNAL_DATA).is_file()


def _check_fidelity(fp32_graph: Path, graph: Path, precision: str, tokenizer, max_length: int, skip_ids,
                    enforce: bool) -> dict:
    from m3rt.runtime import fidelity

    log.info("checking the %s graph against the fp32 graph on %d texts", precision, len(fidelity.FIDELITY_TEXTS))
    ids, mask = fidelity.fidelity_batch(tokenizer, max_length)
    metrics = fidelity.measure(_run_graph(fp32_graph, ids, mask), _run_graph(graph, ids, mask, precision), ids, mask,
                               skip_ids)
    log.info("%s fidelity: %s", precision, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return fidelity.check(metrics, precision, enforce)


def _write_probe(fp32_graph: Path, path: Path, tokenizer) -> None:
    """The probe batch and the fp32 graph's outputs on it (~1 MB at bge-m3 shape)."""
    from m3rt.runtime import fidelity

    ids, mask = fidelity.load_probe_batch(tokenizer)
    np.savez(path, input_ids=ids, attention_mask=mask, **_run_graph(fp32_graph, ids, mask))


def _run_graph(graph: Path, ids: np.ndarray, mask: np.ndarray, precision: str = "fp32") -> dict[str, np.ndarray]:
    """The graph's outputs as the runtime computes them: OpenVINO at the precision's hint for the precisions it
    runs (int8-static, bf16), else onnxruntime with the runtime's session settings."""
    if precision in NEEDS_STANDARD_ATTENTION:
        from m3rt.runtime.openvino_engine import compile_graph, run_compiled

        return run_compiled(compile_graph(graph, precision), ids, mask, OUTPUT_NAMES)
    from m3rt.runtime.config import RuntimeConfig
    from m3rt.runtime.ort_session import open_session

    # The runtime's own session settings: the fidelity measured is that of the arithmetic it will run.
    session = open_session(graph, RuntimeConfig())
    values = session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask})
    return dict(zip(OUTPUT_NAMES, values))


def _readable_by_all(root: Path) -> None:
    """onnx writes external data files 0600; an artifact is deployed to other users: umask's usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)  # the staging folder is made 0700
    for path in root.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


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

    try:
        tok = Tokenizer.from_file(str(root / TOKENIZER))
    except Exception as e:  # the tokenizers library raises a bare Exception on a bad file
        raise SourceError(f"{root / TOKENIZER}: cannot be loaded as a tokenizer ({str(e)[:200]})") from None
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > config.vocab_size:
        raise SourceError(f"{root / TOKENIZER}: {size} tokens, more than the {config.vocab_size} rows of the embedding "
                          "table (vocab_size in config.json); the extra ids would fail at encode time")
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
    if declared is None or (isinstance(declared, (int, float)) and not isinstance(declared, bool) and declared >= limit):
        return int(limit)  # absent, or transformers' "no limit" placeholder (1e30)
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < MIN_MAX_LENGTH:
        raise SourceError(f"{root / 'tokenizer_config.json'}: model_max_length {declared!r} is not a usable token "
                          f"limit (an integer of at least {MIN_MAX_LENGTH}, up to the {limit} positions of config.json)")
    return declared


def _versions() -> dict[str, str]:
    versions = {}
    for pkg in ("m3rt", "torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions
