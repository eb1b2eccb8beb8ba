"""Self-attention for export: one placeholder op per layer in the traced graph, rewritten afterwards.

Traced as Hugging Face's eager code, attention is MatMul -> Add(mask) -> Softmax -> MatMul over a
[batch, heads, S, S] score tensor: 4 GiB per layer at 8192 tokens. onnxruntime's com.microsoft
MultiHeadAttention runs a tiled (flash) kernel on the CPU that never holds the whole score matrix, but only
when it gets no key padding mask; with one it falls back to the unfused kernel, several times slower and
larger at long inputs (bench/results/design-notes.md).
So the export traces each layer's attention as `m3rt::Attention(q, k, v, attention_mask)` and
`rewrite_for_onnxruntime` turns it into

    If(no padding in this batch) then MultiHeadAttention(q, k, v)
                                 else MultiHeadAttention(q, k, v, key_padding_mask)

Single texts and equal-length batches, long inputs above all, take the flash kernel.

`rewrite_standard` instead spells attention in plain ONNX ops (Reshape, MatMul, Softmax), the form
TensorRT's parser reads and fuses into its own attention kernels; com.microsoft ops are onnxruntime's only.
Its padding bias is -10000 (not the float minimum) so that it stays finite in an fp16 graph.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from m3rt.artifact import ATTENTION_KINDS  # noqa: F401 - the spellings an export can have (see above)

PLACEHOLDER_DOMAIN = "m3rt"
PLACEHOLDER_OP = "Attention"
MASK_BIAS = -10000.0


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor,
                     num_heads: int) -> torch.Tensor:
    """[B, S, H] q/k/v (projections applied), key_mask [B, S] of 0/1 -> [B, S, H]; as HF's eager attention."""
    batch, seq, hidden = q.shape
    head = hidden // num_heads

    def split(x):
        return x.view(batch, seq, num_heads, head).transpose(1, 2)

    scores = torch.matmul(split(q), split(k).transpose(-1, -2)) / math.sqrt(head)
    bias = (1.0 - key_mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
    probs = torch.softmax(scores + bias, dim=-1)
    return torch.matmul(probs, split(v)).transpose(1, 2).reshape(batch, seq, hidden)


class _AttentionPlaceholder(torch.autograd.Function):
    """Computes masked_attention in PyTorch; traces to one `m3rt::Attention` node."""

    @staticmethod
    def forward(ctx, q, k, v, key_mask, num_heads: int):
        return masked_attention(q, k, v, key_mask, num_heads)

    @staticmethod
    def symbolic(g, q, k, v, key_mask, num_heads: int):
        out = g.op(f"{PLACEHOLDER_DOMAIN}::{PLACEHOLDER_OP}", q, k, v, key_mask, num_heads_i=num_heads)
        out.setType(q.type())
        return out


class ExportSelfAttention(nn.Module):
    """Stands in for a BERT / XLM-R self-attention module (same q/k/v Linear layers) during export."""

    def __init__(self, original: nn.Module, num_heads: int):
        super().__init__()
        self.query, self.key, self.value = original.query, original.key, original.value
        self.num_heads = num_heads
        self.key_mask: torch.Tensor | None = None  # the raw [B, S] mask, set by M3Graph.forward

    def forward(self, hidden_states, *args, **kwargs):
        if self.key_mask is None:
            raise RuntimeError("ExportSelfAttention used outside export_attention()")
        out = _AttentionPlaceholder.apply(self.query(hidden_states), self.key(hidden_states),
                                          self.value(hidden_states), self.key_mask, self.num_heads)
        return out, None  # (context, attention probabilities), as the modules it replaces


def _self_attention_modules(backbone: nn.Module):
    config = backbone.config
    if getattr(config, "position_embedding_type", "absolute") != "absolute" or config.is_decoder:
        raise ValueError(f"{config.model_type}: only encoders with absolute position embeddings are supported")
    layers = backbone.encoder.layer
    return [(layer.attention, layer.attention.self) for layer in layers]


@contextlib.contextmanager
def export_attention(model: nn.Module):
    """Within the block, every self-attention layer of the M3Graph `model` is an ExportSelfAttention, fed
    the raw mask by model.forward through `model.mask_readers`; the original modules come back afterwards."""
    heads = model.backbone.config.num_attention_heads
    swapped = []
    try:
        for parent, original in _self_attention_modules(model.backbone):
            stand_in = ExportSelfAttention(original, heads)
            parent.self = stand_in
            swapped.append((parent, original))
            model.mask_readers.append(stand_in)
        yield
    finally:
        model.mask_readers.clear()
        for parent, original in swapped:
            parent.self = original


def rewrite_for_onnxruntime(model, mask_input: str = "attention_mask"):
    """Replace every m3rt::Attention node of the onnx `model` (in place) by an If over two
    com.microsoft MultiHeadAttention nodes: flash when the batch has no padding, masked otherwise."""
    from onnx import TensorProto, helper

    placeholders = _placeholders(model.graph)
    if not placeholders:
        return model
    elem_type = _float_type(model, placeholders[0].input[0])
    prefix = "m3rt_attention"
    shared = [
        # One check per batch: the smallest mask value is 1 only when no position is padding.
        helper.make_node("ReduceMin", [mask_input], [f"{prefix}/mask_min"], keepdims=0, name=f"/{prefix}/ReduceMin"),
        helper.make_node("Cast", [f"{prefix}/mask_min"], [f"{prefix}/no_padding"], to=TensorProto.BOOL,
                         name=f"/{prefix}/NoPadding"),
        helper.make_node("Cast", [mask_input], [f"{prefix}/key_padding_mask"], to=TensorProto.INT32,
                         name=f"/{prefix}/KeyPaddingMask"),
    ]
    rewritten = []
    for i, node in enumerate(placeholders):
        q, k, v, _ = node.input
        out = node.output[0]
        heads = next(a.i for a in node.attribute if a.name == "num_heads")

        def branch(tag, inputs):
            mha = helper.make_node("MultiHeadAttention", inputs, [f"{out}/{tag}"], domain="com.microsoft",
                                   num_heads=heads, name=f"{node.name or out}/{tag}/MultiHeadAttention")
            return helper.make_graph([mha], f"{prefix}_{i}_{tag}", [],
                                     [helper.make_tensor_value_info(f"{out}/{tag}", elem_type, None)])

        rewritten.append(helper.make_node(
            "If", [f"{prefix}/no_padding"], [out], name=node.name or f"/{prefix}/If_{i}",
            then_branch=branch("flash", [q, k, v]),
            else_branch=branch("masked", [q, k, v, "", f"{prefix}/key_padding_mask"]),
        ))
    _splice(model.graph, placeholders, shared, [[r] for r in rewritten])
    _set_opsets(model, drop=PLACEHOLDER_DOMAIN, add={"com.microsoft": 1})
    return model


def rewrite_standard(model, hidden_size: int, mask_input: str = "attention_mask"):
    """Replace every m3rt::Attention node (in place) by plain ONNX attention ops."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    placeholders = _placeholders(graph)
    if not placeholders:
        return model
    p = "m3rt_attention"
    heads = next(a.i for a in placeholders[0].attribute if a.name == "num_heads")
    consts = {
        f"{p}/one": np.array(1.0, np.float32),
        f"{p}/mask_bias": np.array(MASK_BIAS, np.float32),
        f"{p}/scale": np.array(1.0 / math.sqrt(hidden_size // heads), np.float32),
        f"{p}/split_heads": np.array([0, 0, heads, hidden_size // heads], np.int64),
        f"{p}/merge_heads": np.array([0, 0, hidden_size], np.int64),
        f"{p}/bias_axes": np.array([1, 2], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    shared = [  # [B, S] mask -> [B, 1, 1, S] additive bias: 0 for tokens, MASK_BIAS for padding
        helper.make_node("Cast", [mask_input], [f"{p}/mask_f"], to=TensorProto.FLOAT, name=f"/{p}/MaskFloat"),
        helper.make_node("Sub", [f"{p}/one", f"{p}/mask_f"], [f"{p}/padding"], name=f"/{p}/Padding"),
        helper.make_node("Mul", [f"{p}/padding", f"{p}/mask_bias"], [f"{p}/bias2"], name=f"/{p}/MaskBias"),
        helper.make_node("Unsqueeze", [f"{p}/bias2", f"{p}/bias_axes"], [f"{p}/bias"], name=f"/{p}/BiasB11S"),
    ]
    replacements = []
    for i, node in enumerate(placeholders):
        q, k, v, _ = node.input
        t = f"{p}/{i}"
        n = f"/{p}/{i}"
        replacements.append([
            helper.make_node("Reshape", [q, f"{p}/split_heads"], [f"{t}/q4"], name=f"{n}/ReshapeQ"),
            helper.make_node("Transpose", [f"{t}/q4"], [f"{t}/qt"], perm=[0, 2, 1, 3], name=f"{n}/TransposeQ"),
            # Scale q before the product: smaller values in fp16.
            helper.make_node("Mul", [f"{t}/qt", f"{p}/scale"], [f"{t}/qs"], name=f"{n}/ScaleQ"),
            helper.make_node("Reshape", [k, f"{p}/split_heads"], [f"{t}/k4"], name=f"{n}/ReshapeK"),
            helper.make_node("Transpose", [f"{t}/k4"], [f"{t}/kt"], perm=[0, 2, 3, 1], name=f"{n}/TransposeK"),
            helper.make_node("Reshape", [v, f"{p}/split_heads"], [f"{t}/v4"], name=f"{n}/ReshapeV"),
            helper.make_node("Transpose", [f"{t}/v4"], [f"{t}/vt"], perm=[0, 2, 1, 3], name=f"{n}/TransposeV"),
            helper.make_node("MatMul", [f"{t}/qs", f"{t}/kt"], [f"{t}/scores"], name=f"{n}/MatMulQK"),
            helper.make_node("Add", [f"{t}/scores", f"{p}/bias"], [f"{t}/masked"], name=f"{n}/AddMask"),
            helper.make_node("Softmax", [f"{t}/masked"], [f"{t}/probs"], axis=-1, name=f"{n}/Softmax"),
            helper.make_node("MatMul", [f"{t}/probs", f"{t}/vt"], [f"{t}/ctx"], name=f"{n}/MatMulPV"),
            helper.make_node("Transpose", [f"{t}/ctx"], [f"{t}/ctxt"], perm=[0, 2, 1, 3], name=f"{n}/TransposeOut"),
            helper.make_node("Reshape", [f"{t}/ctxt", f"{p}/merge_heads"], [node.output[0]], name=f"{n}/MergeHeads"),
        ])
    _splice(graph, placeholders, shared, replacements)
    _set_opsets(model, drop=PLACEHOLDER_DOMAIN, add={})
    return model


def _placeholders(graph) -> list:
    return [n for n in graph.node if n.domain == PLACEHOLDER_DOMAIN and n.op_type == PLACEHOLDER_OP]


def _splice(graph, placeholders: list, shared: list, replacements: list[list]) -> None:
    """Put `shared` before the first placeholder and each placeholder's replacement nodes in its place."""
    by_node = {id(n): r for n, r in zip(placeholders, replacements)}
    nodes = list(graph.node)
    first = nodes.index(placeholders[0])
    new_nodes = nodes[:first] + shared
    for node in nodes[first:]:
        new_nodes.extend(by_node.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(new_nodes)


def _float_type(model, name: str) -> int:
    from onnx import TensorProto

    for vi in list(model.graph.value_info) + list(model.graph.output):
        if vi.name == name:
            return vi.type.tensor_type.elem_type
    return TensorProto.FLOAT


def _set_opsets(model, drop: str, add: dict[str, int]) -> None:
    from onnx import helper

    kept = [o for o in model.opset_import if o.domain != drop and o.domain not in add]
    del model.opset_import[:]
    model.opset_import.extend(kept + [helper.make_opsetid(d, v) for d, v in add.items()])
