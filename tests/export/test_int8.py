"""int8 artifacts: the quantised graph, its fidelity report and thresholds, judged on TRAINED weights
(all-MiniLM-L6-v2, a BERT, with M3 heads), and the BERT backbone path of the exporter and runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from encoding_checks import ALL, fresh_texts


def top10(weights: dict) -> set:
    return {k for k, _ in sorted(weights.items(), key=lambda kv: -float(kv[1]))[:10]}


def test_int8_manifest_reports_fidelity_within_thresholds(minilm_artifacts):
    m = json.loads((minilm_artifacts["int8"] / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["model_type"] == "bert"
    report = m["validation"]["int8"]
    assert report["reference"] == "fp32 graph"
    metrics = report["metrics"]
    assert metrics["dense_min_cosine"] >= 0.99 and metrics["sparse_top10_overlap"] >= 0.9
    for name, bound in report["thresholds"].items():
        value = metrics[name]
        assert value >= bound["min"] if "min" in bound else value <= bound["max"], name
    # The fp32 graph itself was checked against PyTorch first.
    assert all(v["max_abs_err"] <= v["tolerance"] for v in m["validation"]["outputs"].values())


def test_int8_graph_is_quantised_with_fp32_heads_and_fp16_embeddings(minilm_artifacts):
    import onnx

    model = onnx.load(str(minilm_artifacts["int8"] / "model.onnx"), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    assert "DynamicQuantizeLinear" in ops and ("MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops)
    float_matmuls = {n.name for n in model.graph.node if n.op_type == "MatMul"}
    assert any(n.startswith("/colbert/") for n in float_matmuls) and any(n.startswith("/sparse/") for n in float_matmuls)
    assert not any("/layer.1/" in n for n in float_matmuls), "layers after the first are quantised"
    tables = [t for t in model.graph.initializer if list(t.dims) == [30522, 384]]
    assert len(tables) == 1 and tables[0].data_type == onnx.TensorProto.FLOAT16
    # The int8 artifact is far smaller than the fp32 one.
    size = lambda root: sum(p.stat().st_size for p in root.iterdir())
    assert size(minilm_artifacts["int8"]) < 0.5 * size(minilm_artifacts["fp32"])


def test_int8_runtime_outputs_close_to_fp32_on_fresh_texts(minilm_artifacts):
    """The goals, through the runtime on texts the export never saw: dense cosine >= 0.99 for every
    text, sparse top-10 overlap >= 0.9 on average."""
    from m3rt import M3Runtime

    texts = fresh_texts(40, seed=7)
    fp32 = M3Runtime(minilm_artifacts["fp32"]).encode(texts, batch_size=8, **ALL)
    int8 = M3Runtime(minilm_artifacts["int8"]).encode(texts, batch_size=8, **ALL)
    cos = np.sum(fp32["dense_vecs"] * int8["dense_vecs"], axis=1)
    assert cos.min() >= 0.99, cos.min()
    overlap = np.mean([len(top10(a) & top10(b)) / len(top10(a)) for a, b in zip(fp32["lexical_weights"],
                                                                             int8["lexical_weights"]) if a])
    assert overlap >= 0.9, overlap
    colbert = np.concatenate([np.sum(a * b, axis=1) for a, b in zip(fp32["colbert_vecs"], int8["colbert_vecs"])])
    assert colbert.mean() >= 0.98, colbert.mean()


def test_bert_backbone_matches_flagembedding(minilm_m3_dir, minilm_artifacts):
    """A BERT backbone (special ids from its tokenizer: [CLS] [SEP] [PAD] [UNK]) against FlagEmbedding."""
    flag = pytest.importorskip("FlagEmbedding")
    from m3rt import M3Runtime

    from encoding_checks import assert_same_encoding

    texts = fresh_texts(12, seed=3) + ["", "a"]
    ref = flag.BGEM3FlagModel(str(minilm_m3_dir), use_fp16=False, devices="cpu").encode(
        texts, batch_size=4, max_length=512, **ALL)
    ours = M3Runtime(minilm_artifacts["fp32"]).encode(texts, batch_size=4, max_length=512, **ALL)
    assert_same_encoding(ours, ref)
    m = json.loads((minilm_artifacts["fp32"] / "manifest.json").read_text())
    assert m["special_ids"]["cls"] == 101 and m["special_ids"]["pad"] == 0 and m["max_length"] == 512


def test_int8_below_threshold_fails_naming_the_metric(tiny_model_dir, tmp_path, monkeypatch):
    from m3rt.errors import ExportValidationError
    from m3rt.runtime import fidelity
    from m3rt.export import export

    monkeypatch.setitem(fidelity.THRESHOLDS, "int8", [("dense_min_cosine", "min", 1.01)])
    with pytest.raises(ExportValidationError, match=r"dense_min_cosine 0\.\d+ \(below 1.01\)"):
        export(tiny_model_dir, tmp_path / "out", precision="int8")
    assert not (tmp_path / "out").exists(), "a failed export leaves no half-written artifact"


def test_unknown_precision_is_a_clear_error(tiny_model_dir, tmp_path):
    from m3rt.export import export

    with pytest.raises(ValueError, match="precision 'int4' is not supported"):
        export(tiny_model_dir, tmp_path / "out", precision="int4")
