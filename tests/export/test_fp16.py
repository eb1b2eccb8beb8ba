"""fp16 artifacts (the GPU precision), checked on the CPU: onnxruntime runs fp16 graphs there too.
Both attention spellings: fused (onnxruntime's MultiHeadAttention) and standard (plain ops, for TensorRT)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from encoding_checks import ALL, fresh_texts


@pytest.fixture(scope="module")
def fp16_artifacts(minilm_m3_dir, tmp_path_factory):
    from m3rt.export import export

    root = tmp_path_factory.mktemp("fp16")
    return {a: export(minilm_m3_dir, root / a, precision="fp16", attention=a) for a in ("fused", "standard")}


@pytest.mark.parametrize("attention", ["fused", "standard"])
def test_fp16_graph_types_and_fidelity(fp16_artifacts, attention):
    import onnx

    root = fp16_artifacts[attention]
    m = json.loads((root / "manifest.json").read_text())
    assert m["precision"] == "fp16" and m["attention"] == attention
    metrics = m["validation"]["fp16"]["metrics"]
    assert metrics["dense_min_cosine"] >= 0.999 and metrics["colbert_mean_cosine"] >= 0.999
    model = onnx.load(str(root / "model.onnx"), load_external_data=False)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.INT64] * 2
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.FLOAT}
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert sum(d == onnx.TensorProto.FLOAT16 for d in weights.values()) > 20
    assert any(n.op_type == "LayerNormalization" for n in model.graph.node), "opset-17 LayerNorm, not decomposed"
    head = next(n for n in model.graph.node if n.name == "/colbert/MatMul")
    assert weights[head.input[1]] == onnx.TensorProto.FLOAT, "the heads stay fp32"
    domains = {n.domain for n in model.graph.node}
    if attention == "standard":  # what TensorRT's parser reads: standard ops only
        assert domains <= {"", "ai.onnx"}
    else:
        assert "com.microsoft" in {o.domain for o in model.opset_import}


@pytest.mark.parametrize("attention", ["fused", "standard"])
def test_fp16_runtime_close_to_fp32(fp16_artifacts, minilm_artifacts, attention):
    from m3rt import M3Runtime

    texts = fresh_texts(24, seed=11)
    ref = M3Runtime(minilm_artifacts["fp32"]).encode(texts, batch_size=6, **ALL)
    got = M3Runtime(fp16_artifacts[attention]).encode(texts, batch_size=6, **ALL)
    assert got["dense_vecs"].dtype == np.float32
    assert np.sum(ref["dense_vecs"] * got["dense_vecs"], axis=1).min() >= 0.999
    for a, b in zip(ref["colbert_vecs"], got["colbert_vecs"]):
        assert np.sum(a * b, axis=1).mean() >= 0.999
    for a, b in zip(ref["lexical_weights"], got["lexical_weights"]):
        for token in set(a) & set(b):
            assert abs(float(a[token]) - float(b[token])) <= 0.02 * max(1.0, float(a[token]))


def test_standard_attention_fp32_matches_pytorch(minilm_m3_dir, tmp_path):
    """The plain-op attention in fp32 passes the same 1e-4 validation against PyTorch as the fused one."""
    from m3rt.export import export

    m = json.loads((export(minilm_m3_dir, tmp_path / "a", attention="standard") / "manifest.json").read_text())
    assert all(v["max_abs_err"] <= v["tolerance"] for v in m["validation"]["outputs"].values())


def test_unknown_attention_is_a_clear_error(tiny_model_dir, tmp_path):
    from m3rt.export import export

    with pytest.raises(ValueError, match="attention 'flash' is not one of fused, standard"):
        export(tiny_model_dir, tmp_path / "out", attention="flash")


@pytest.mark.parametrize("attention", ["fused", "standard"])
def test_fp16_heads_are_fp32_and_padding_rows_finite(fp16_artifacts, attention):
    """The converter once bracketed every head tensor with fp32 -> fp16 -> fp32 casts: the outputs were
    rounded to fp16 and the normalisation's eps (1e-12) became 0, so ColBERT rows of padding were NaN."""
    import onnx
    import onnxruntime as ort

    from m3rt.artifact import OUTPUT_NAMES, read_manifest
    from m3rt.runtime.tokenize import TextTokenizer

    root = fp16_artifacts[attention]
    model = onnx.load(str(root / "model.onnx"), load_external_data=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    for out in OUTPUT_NAMES:  # each output is computed in fp32, never read back from an fp16 tensor
        node = producer[out]
        while node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            assert to == onnx.TensorProto.FLOAT, f"{out}: passes through a Cast to {to}"
            node = producer[node.input[0]]
    manifest = read_manifest(root)
    tok = TextTokenizer(manifest.tokenizer_path, manifest.pad_id)
    from m3rt.runtime.batching import pad_batch

    ids, mask = pad_batch(tok.encode(fresh_texts(6, seed=5) + ["a"], 64), manifest.pad_id)
    assert (mask == 0).any()
    session = ort.InferenceSession(str(manifest.graph_path), providers=["CPUExecutionProvider"])
    outs = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask})))
    for name, value in outs.items():
        assert np.isfinite(value).all(), f"{name}: {int((~np.isfinite(value)).sum())} non-finite values"
    padding = ~mask[:, 1:].astype(bool)
    assert np.all(outs["colbert_vecs"][padding] == 0)


def _cast(name, src, dst, to):
    import onnx

    return onnx.helper.make_node("Cast", [src], [dst], name=name, to=to)


def test_round_trip_casts_are_removed_and_others_kept():
    import onnx
    from onnx import TensorProto, helper

    from m3rt.export.half import drop_fp16_round_trips

    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),  # fp32
        _cast("down", "a", "a16", TensorProto.FLOAT16), _cast("up", "a16", "a32", TensorProto.FLOAT),
        helper.make_node("Neg", ["a32"], ["b"], name="neg"),
        _cast("idown", "i", "i16", TensorProto.FLOAT16), _cast("iup", "i16", "i32", TensorProto.FLOAT),  # from int
        helper.make_node("Add", ["b", "i32"], ["c"], name="add"),
        _cast("out_down", "c", "c16", TensorProto.FLOAT16), _cast("out_up", "c16", "y", TensorProto.FLOAT),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                           helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    # Types come from shape inference, as in convert_fp16.
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert drop_fp16_round_trips(model.graph) == 2
    onnx.checker.check_model(model)
    names = [n.name for n in model.graph.node]
    assert "down" not in names and "up" not in names
    assert "idown" in names and "iup" in names, "a round trip from int64 is a conversion, not a rounding"
    assert next(n for n in model.graph.node if n.name == "neg").input[0] == "a"
    assert next(n for n in model.graph.node if n.output[0] == "y").input[0] == "c"
    import onnxruntime as ort

    x = np.array([1e-12, 70000.0], dtype=np.float32)  # both lost in fp16 (0 and inf)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x, "i": np.array([1, 2], dtype=np.int64)})
    np.testing.assert_array_equal(y, -x + np.array([1, 2], dtype=np.float32))


def test_duplicate_converter_nodes_are_dropped_and_conflicts_named():
    from onnx import TensorProto, helper

    from m3rt.export.half import drop_duplicate_nodes

    cast = _cast("c", "x", "x32", TensorProto.FLOAT)
    graph = helper.make_graph([cast, _cast("c", "x", "x32", TensorProto.FLOAT), cast], "g", [], [])
    assert drop_duplicate_nodes(graph) == 2 and len(graph.node) == 1
    graph = helper.make_graph([cast, _cast("other", "z", "x32", TensorProto.FLOAT)], "g", [], [])
    with pytest.raises(ValueError, match="x32"):
        drop_duplicate_nodes(graph)
