"""What m3rt reads from an ONNX file without the onnx package (the runtime does not depend on it): a minimal
protobuf reader over a memory map, skipping weight bytes without copying them.

It collects what an artifact's checks need (artifact.py): every external-data location the graph names (in
initializers, sparse initializers, node attributes and subgraphs, functions included), the graph's outputs with
their static dimensions, and the rows of the embedding tables looked up by Gather (the vocabulary and position
counts).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path

# ONNX's protobuf field numbers (onnx/onnx.proto3).
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
FUNCTION_NODE = 7
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_SPARSE_INITIALIZER = 1, 5, 11, 12, 15
NODE_INPUT, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 4, 5
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS = 5, 6, 10, 11, 22, 23
TENSOR_DIMS, TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 1, 8, 13, 14
SPARSE_VALUES, SPARSE_INDICES = 1, 2
ENTRY_KEY, ENTRY_VALUE = 1, 2
VALUE_NAME, VALUE_TYPE = 1, 2
TYPE_TENSOR, TENSOR_TYPE_SHAPE, SHAPE_DIM, DIM_VALUE, DIM_PARAM = 1, 2, 1, 1, 2


class NotOnnx(ValueError):
    """Bytes that are not a protobuf this reader can walk."""


@dataclass
class GraphFacts:
    external_locations: list[str] = field(default_factory=list)
    # Graph outputs: name -> dims (an int where static, a str where symbolic).
    outputs: dict[str, list] = field(default_factory=dict)
    # Gather lookups of a 2-D initializer: (its rows, its columns, whether the indices are the graph input
    # `input_ids`): the word, position and token-type embedding tables.
    lookups: list[tuple[int, int, bool]] = field(default_factory=list)

    @property
    def word_embeddings(self) -> tuple[int, int] | None:
        """(vocabulary rows, width) of the table input_ids index."""
        return next(((rows, cols) for rows, cols, by_ids in self.lookups if by_ids), None)

    @property
    def position_rows(self) -> int | None:
        """Rows of the position table: the largest other lookup (token types have one or two rows)."""
        rows = [r for r, _, by_ids in self.lookups if not by_ids and r > 2]
        return max(rows) if rows else None


def read_graph_facts(path: str | Path) -> GraphFacts:
    facts = GraphFacts()
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise NotOnnx(f"{path}: empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            view = memoryview(buf)
            problem = _walk(view, facts)
            view.release()  # every slice of it went with _walk's frames (and its exception's): the map can close
    if problem is not None:
        raise NotOnnx(problem)
    return facts


def _walk(view, facts: GraphFacts) -> str | None:
    try:
        _model(view, facts)
    except (NotOnnx, IndexError, ValueError) as e:
        return str(e) or type(e).__name__
    return None


def _model(buf, facts: GraphFacts) -> None:
    for num, value in _fields(buf):
        if num == MODEL_GRAPH:
            _graph(value, facts, top=True)
        elif num == MODEL_FUNCTIONS:
            for n, node in _fields(value):
                if n == FUNCTION_NODE:
                    _node(node, facts, {}, top=False)


def _graph(buf, facts: GraphFacts, top: bool) -> None:
    initializers: dict[str, list[int]] = {}
    nodes = []
    for num, value in _fields(buf):
        if num == GRAPH_INITIALIZER:
            name, dims = _tensor(value, facts)
            initializers[name] = dims
        elif num == GRAPH_SPARSE_INITIALIZER:
            _sparse_tensor(value, facts)
        elif num == GRAPH_NODE:
            nodes.append(value)
        elif num == GRAPH_OUTPUT and top:
            name, dims = _value_info(value)
            facts.outputs[name] = dims
    for node in nodes:
        _node(node, facts, initializers, top)


def _node(buf, facts: GraphFacts, initializers: dict, top: bool) -> None:
    inputs, op = [], ""
    for num, value in _fields(buf):
        if num == NODE_INPUT:
            inputs.append(_text(value))
        elif num == NODE_OP_TYPE:
            op = _text(value)
        elif num == NODE_ATTRIBUTE:
            _attribute(value, facts)
    if top and op == "Gather" and len(inputs) == 2 and len(initializers.get(inputs[0], ())) == 2:
        rows, cols = initializers[inputs[0]]
        facts.lookups.append((int(rows), int(cols), inputs[1] == "input_ids"))


def _attribute(buf, facts: GraphFacts) -> None:
    for num, value in _fields(buf):
        if num in (ATTR_T, ATTR_TENSORS):
            _tensor(value, facts)
        elif num in (ATTR_G, ATTR_GRAPHS):
            _graph(value, facts, top=False)
        elif num in (ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS):
            _sparse_tensor(value, facts)


def _tensor(buf, facts: GraphFacts) -> tuple[str, list[int]]:
    name, dims = "", []
    for num, value in _fields(buf):
        if num == TENSOR_NAME:
            name = _text(value)
        elif num == TENSOR_DIMS:
            dims.extend(_ints(value))
        elif num == TENSOR_EXTERNAL_DATA:
            entry = dict((n, _text(v)) for n, v in _fields(value) if n in (ENTRY_KEY, ENTRY_VALUE))
            if entry.get(ENTRY_KEY) == "location":
                facts.external_locations.append(entry.get(ENTRY_VALUE, ""))
    return name, dims


def _sparse_tensor(buf, facts: GraphFacts) -> None:
    for num, value in _fields(buf):
        if num in (SPARSE_VALUES, SPARSE_INDICES):
            _tensor(value, facts)


def _value_info(buf) -> tuple[str, list]:
    name, dims = "", []
    for num, value in _fields(buf):
        if num == VALUE_NAME:
            name = _text(value)
        elif num == VALUE_TYPE:
            for n, tensor in _fields(value):
                if n != TYPE_TENSOR:
                    continue
                for m, shape in _fields(tensor):
                    if m != TENSOR_TYPE_SHAPE:
                        continue
                    for k, dim in _fields(shape):
                        if k == SHAPE_DIM:
                            parts = dict(_fields(dim))
                            dims.append(parts[DIM_VALUE] if DIM_VALUE in parts else
                                        _text(parts[DIM_PARAM]) if DIM_PARAM in parts else None)
    return name, dims


def _fields(buf):
    """(field number, value) of one message: an int for varints and fixed-width fields, a memoryview for
    length-delimited ones (no copy)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise NotOnnx("a field runs past the end of its message")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise NotOnnx(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise NotOnnx("truncated message")
        yield num, value


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotOnnx("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _ints(value) -> list[int]:
    """A repeated int64: one varint, or a packed run of them."""
    if isinstance(value, int):
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(value) -> str:
    return bytes(value).decode("utf-8", "replace") if not isinstance(value, int) else str(value)
