"""int8 for the CPU: dynamic quantisation of the backbone's weight matrix products.

- Every MatMul with a constant weight in the backbone: int8 weights, one scale per output channel;
  activations quantised per call (uint8, per tensor), which onnxruntime runs as DynamicQuantizeMatMul
  on VNNI. Attention (q.k and p.v) stays fp32 inside MultiHeadAttention.
- The two heads and the first encoder layer stay fp32: the heads are a small share of the work and what
  the outputs are read from; the first layer is the most sensitive one (on the trained all-MiniLM-L6-v2 with
  M3 heads, keeping it in fp32 lifts the sparse top-10 overlap and the worst dense cosine markedly, for a
  small share of the int8 time at 24 layers).
- The word embedding table (the largest tensor: 1 GB fp32 for bge-m3) is stored fp16 with a Cast after the
  lookup: half the memory, a 2^-11 relative rounding that is far below the int8 error.
Norms, biases and position embeddings stay fp32.

Tried and not kept: onnxruntime's weight-only MatMulNBits with int8 compute (slower at 8 and 4 bits), and
fusing q/k/v into one [H, 3H] product (no change beyond noise). The figures: bench/results/design-notes.md.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from m3rt.export.onnx_export import save_graph

log = logging.getLogger("m3rt.export")

# Node-name prefixes (the TorchScript exporter names nodes by module path) kept in fp32.
FP32_SCOPES = ("/colbert/", "/sparse/", "/backbone/encoder/layer.0/")


def quantize_int8(fp32_graph: Path, out_path: Path, work_dir: Path | None = None) -> None:
    """Write the int8 graph of `fp32_graph` to `out_path`, its weights to EXTERNAL_DATA beside it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(fp32_graph), load_external_data=True)
    kept = [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.name.startswith(FP32_SCOPES)]
    with tempfile.TemporaryDirectory(prefix="m3rt-int8-", dir=work_dir) as tmp:
        quantized = Path(tmp) / "int8.onnx"
        log.info("quantising the backbone's matrix products to int8 (per channel; %d kept fp32: heads, layer 0)",
                 len(kept))
        with _quiet_quantizer():
            quantize_dynamic(
                proto, quantized, op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8,
                nodes_to_exclude=kept, use_external_data_format=True,
                extra_options={"MatMulConstBOnly": True},
            )
        del proto
        model = onnx.load(str(quantized), load_external_data=True)
    embeddings_to_fp16(model)
    # Weights in a data file beside the graph: onnxruntime maps it, so the fp16 embedding table costs
    # resident memory only for the rows looked up: a fraction of the RSS of one protobuf file
    # (bench/results/design-notes.md).
    save_graph(model, out_path, external=True)


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantiser logs a line per tensor (and a pre-processing hint) on the root logger."""
    root = logging.getLogger()

    def keep(record):
        return "onnxruntime" not in record.pathname

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def embeddings_to_fp16(model) -> str | None:
    """Store the word-embedding table fp16 and cast the looked-up rows back to fp32 (in place).

    The table is the largest initializer read by a Gather on `input_ids`. Returns its name, or None.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    lookups = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in initializers
               and n.input[1] == "input_ids"]
    if not lookups:
        return None
    node = max(lookups, key=lambda n: np.prod(initializers[n.input[0]].dims))
    table = initializers[node.input[0]]
    if table.data_type != TensorProto.FLOAT:
        return None
    half = numpy_helper.from_array(numpy_helper.to_array(table).astype(np.float16), table.name)
    table.CopyFrom(half)
    rows = node.output[0]
    node.output[0] = f"{rows}/fp16"
    cast = helper.make_node("Cast", [node.output[0]], [rows], to=TensorProto.FLOAT, name=f"{node.name}/ToFloat")
    nodes = list(graph.node)
    nodes.insert(nodes.index(node) + 1, cast)
    del graph.node[:]
    graph.node.extend(nodes)
    return table.name
