"""fp16 for GPUs: the fp32 graph converted to fp16, inputs int64 and outputs fp32 as before.

- The backbone runs fp16: matrix products, GELU, opset-17 LayerNormalization (one op, whose kernels in
  onnxruntime and TensorRT accumulate in fp32; the decomposed Pow/ReduceMean form overflows in fp16,
  TensorRT issues #3101, #2564) and attention (onnxruntime's MultiHeadAttention, or plain ops whose padding
  bias is -10000, finite in fp16).
- Everything after the backbone stays fp32: the heads, the relu and the L2 normalisations, whose sums of
  squares are where fp16 would lose most.
"""

from __future__ import annotations

import logging
from pathlib import Path

from m3rt.export.onnx_export import save_graph

log = logging.getLogger("m3rt.export")


def convert_fp16(fp32_graph: Path, out_path: Path) -> None:
    """Write the fp16 graph of `fp32_graph` to `out_path`, its weights to EXTERNAL_DATA beside it."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # Types of every tensor, which the converter needs to place its Casts. Shape inference cannot take an
    # in-memory proto over 2 GB (bge-m3 fp32 is 2.27 GB); the path-based one can.
    typed = out_path.parent / f".{out_path.name}.typed"
    onnx.shape_inference.infer_shapes_path(str(fp32_graph), str(typed))
    model = onnx.load(str(typed), load_external_data=False)
    typed.unlink()
    onnx.external_data_helper.load_external_data_for_model(model, str(fp32_graph.parent))
    # The exporter names nodes by module path: the backbone's are under /backbone/, its mask logic under
    # /m3rt_attention/; the rest (heads, normalisations) keeps fp32.
    keep = [n.name for n in model.graph.node
            if n.name.startswith("/") and not n.name.startswith(("/backbone/", "/m3rt_attention/"))]
    log.info("converting the backbone to fp16 (%d head / normalisation nodes kept fp32)", len(keep))
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep, disable_shape_infer=True)
    save_graph(half, out_path, external=True)
