"""Trace the M3 graph to ONNX with dynamic batch and sequence axes, weights in one file when over 2 GB.

Attention is traced as a placeholder op and rewritten for onnxruntime's kernels (export/attention.py).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import torch

from m3rt.artifact import EXTERNAL_DATA, INPUT_NAMES, OUTPUT_NAMES
from m3rt.export.attention import PLACEHOLDER_DOMAIN, export_attention, rewrite_for_onnxruntime, rewrite_standard

log = logging.getLogger("m3rt.export")

# protobuf refuses messages over 2 GiB; leave room for the graph itself.
PROTOBUF_LIMIT = 2**31 - 64 * 2**20

DYNAMIC_AXES = {
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "sequence"},
    "dense_vecs": {0: "batch"},
    "sparse_weights": {0: "batch", 1: "sequence"},
    "colbert_vecs": {0: "batch", 1: "sequence_minus_1"},
}


def _tracing_inputs(pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows, the second padded: tracing with no padding would let the mask path be pruned."""
    ids = torch.tensor([[0, 10, 11, 12, 13, 14, 15, 2], [0, 10, 11, 2, pad_id, pad_id, pad_id, pad_id]])
    mask = (ids != pad_id).long()
    return ids, mask


def export_onnx(model: torch.nn.Module, out_path: Path, *, pad_id: int, opset: int,
                attention: str = "fused", work_dir: Path | None = None) -> Path | None:
    """Write `out_path` (and EXTERNAL_DATA beside it when needed). Returns the external data path or None.
    work_dir: where the raw traced graph goes (the export's scratch folder, cleaned after a killed run)."""
    import onnx

    ids, mask = _tracing_inputs(pad_id)
    with tempfile.TemporaryDirectory(prefix="m3rt-export-", dir=work_dir) as tmp:
        raw = Path(tmp) / "raw.onnx"
        log.info("tracing the model to ONNX (opset %d)", opset)
        with torch.no_grad(), warnings.catch_warnings(), export_attention(model):
            # The legacy exporter is chosen on purpose; its deprecation and tracer notes are noise here.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model, (ids, mask), str(raw),
                input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                dynamic_axes=DYNAMIC_AXES, opset_version=opset, do_constant_folding=True,
                dynamo=False,  # the TorchScript exporter: plain graph, measured fastest under onnxruntime
                custom_opsets={PLACEHOLDER_DOMAIN: 1},
            )
        log.info("re-saving the graph (one external data file if over 2 GB)")
        proto = onnx.load(str(raw), load_external_data=True)
        if attention == "fused":
            rewrite_for_onnxruntime(proto)
        else:
            rewrite_standard(proto, model.backbone.config.hidden_size)
        weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
        external = weight_bytes > PROTOBUF_LIMIT
        save_graph(proto, out_path, external)
    return out_path.parent / EXTERNAL_DATA if external else None


def save_graph(model, out_path: Path, external: bool) -> None:
    """Save `model` to `out_path`, its weights in ONE EXTERNAL_DATA file beside it when `external`."""
    import onnx

    data_path = out_path.parent / EXTERNAL_DATA
    if data_path.exists():
        data_path.unlink()  # onnx appends to an existing data file
    onnx.save_model(
        model, str(out_path), save_as_external_data=external,
        all_tensors_to_one_file=True, location=EXTERNAL_DATA, size_threshold=1024,
    )
