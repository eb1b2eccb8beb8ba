"""fp16 artifacts (the GPU precision), checked on the CPU: onnxruntime runs fp16 graphs there too.
Both attention spellings: fused (onnxruntime's MultiHeadAttention) and standard (plain ops, for TensorRT)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_int8 import ALL, fresh_texts


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
