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
    drop_duplicate_nodes(half.graph)
    drop_fp16_round_trips(half.graph)
    save_graph(half, out_path, external=True)


def drop_fp16_round_trips(graph) -> int:
    """Rewire Cast(fp32 -> fp16) -> Cast(fp16 -> fp32) pairs to the fp32 tensor itself; returns how many.

    The converter gives every tensor between two kept-fp32 nodes an fp16 type and brackets it with such a
    pair, so the heads' intermediates and the outputs were rounded to fp16 after all, and the normalisations'
    eps (1e-12) became 0: ColBERT rows of padding came out 0/0 = NaN. Removing a round trip only removes a
    rounding; a Cast whose source is not known to be fp32 is left alone.
    """
    from onnx import TensorProto

    fp32, fp16 = TensorProto.FLOAT, TensorProto.FLOAT16
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            types[node.output[0]] = node.attribute[0].t.data_type
        elif node.op_type == "Cast":
            types[node.output[0]] = _cast_to(node)
    producer = {out: node for node in graph.node for out in node.output}
    rename = {}
    for node in graph.node:
        if node.op_type != "Cast" or _cast_to(node) != fp32:
            continue
        first = producer.get(node.input[0])
        if first is not None and first.op_type == "Cast" and _cast_to(first) == fp16 \
                and types.get(first.input[0]) == fp32:
            rename[node.output[0]] = first.input[0]
    if not rename:
        return 0
    graph_outputs = {o.name for o in graph.output}
    for node in _nodes_with_subgraphs(graph):  # If branches read outer tensors by name too
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    # A graph output keeps its name: its Cast now reads the fp32 tensor (an fp32 -> fp32 identity).
    for name in rename.keys() & graph_outputs:
        producer[name].input[0] = rename[name]
    _drop_dead_nodes(graph)
    log.info("removed %d fp32 -> fp16 -> fp32 round trips", len(rename))
    return len(rename)


def _nodes_with_subgraphs(graph):
    for node in graph.node:
        yield from _nodes_with_subgraphs_of(node)


def _cast_to(node) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def _drop_dead_nodes(graph) -> None:
    """Drop nodes no graph output depends on (the converter appends its Casts out of order: no ordering
    is assumed)."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    live, todo = set(), [o.name for o in graph.output]
    while todo:
        i = producer.get(todo.pop())
        if i is None or i in live:
            continue
        live.add(i)
        todo.extend(name for n in _nodes_with_subgraphs_of(graph.node[i]) for name in n.input)
    if len(live) != len(graph.node):
        kept = [node for i, node in enumerate(graph.node) if i in live]
        del graph.node[:]
        graph.node.extend(kept)


def _nodes_with_subgraphs_of(node):
    """The node and every node of its subgraphs (If / Loop bodies), at any depth."""
    yield node
    for attr in node.attribute:
        for sub in (attr.g, *attr.graphs):
            yield from _nodes_with_subgraphs(sub)


def drop_duplicate_nodes(graph) -> int:
    """Remove nodes identical to an earlier one; returns how many.

    onnxruntime 1.30's converter (the GPU image's) inserts one Cast per consumer of a tensor that feeds
    several kept-fp32 nodes, all with the same name and output: a graph onnxruntime refuses to load
    ("two nodes with same node name"). Identical nodes compute identical outputs, so the first suffices.
    """
    seen, kept = set(), []
    for node in graph.node:
        key = node.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            kept.append(node)
    dropped = len(graph.node) - len(kept)
    if dropped:
        del graph.node[:]
        graph.node.extend(kept)
        log.info("dropped %d duplicate nodes left by the fp16 converter", dropped)
    producers: dict[str, str] = {}
    for node in graph.node:
        for name in node.output:
            if name and name in producers:
                raise ValueError(f"fp16 graph: tensor {name!r} is written by both {producers[name]!r} and "
                                 f"{node.name!r}")
            producers[name] = node.name
    return dropped
