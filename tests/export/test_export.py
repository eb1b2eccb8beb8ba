"""The exporter: graph shape and axes, manifest, validation, head-file checks, large-model external data."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from m3rt.artifact import read_manifest, sha256_file
from m3rt.errors import ExportValidationError, SourceError


def test_graph_inputs_outputs_and_dynamic_axes(tiny_artifact):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tiny_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    assert list(inputs) == ["input_ids", "attention_mask"]
    assert all(i.type == "tensor(int64)" and all(isinstance(d, str) for d in i.shape) for i in inputs.values())
    assert [o.name for o in sess.get_outputs()] == ["dense_vecs", "sparse_weights", "colbert_vecs"]
    for batch, seq in [(1, 2), (3, 17), (2, 300)]:  # shapes never traced
        ids = np.random.default_rng(batch).integers(4, 300, size=(batch, seq))
        ids[:, 0], ids[:, -1] = 0, 2
        dense, sparse, colbert = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        assert dense.shape == (batch, 64) and sparse.shape == (batch, seq) and colbert.shape == (batch, seq - 1, 64)
        np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1, atol=1e-5)
        assert (sparse >= 0).all()


def test_padding_rows_masked_in_graph(runtime):
    ids = np.array([[0, 10, 11, 2], [0, 10, 2, 1]])
    out = runtime.engine.run(ids, (ids != 1).astype(np.int64), ["colbert_vecs", "dense_vecs"])
    assert np.all(out["colbert_vecs"][1, 2] == 0)  # the padded position's vector is zero
    np.testing.assert_allclose(np.linalg.norm(out["colbert_vecs"][0], axis=-1), 1, atol=1e-5)


def test_manifest_contents(tiny_artifact, tiny_model_dir):
    m = read_manifest(tiny_artifact).data
    assert m["format_version"] == 1 and m["precision"] == "fp32" and m["opset"] >= 17
    assert m["source"] == str(tiny_model_dir)
    assert m["dims"]["hidden"] == 64 and m["dims"]["colbert"] == 64 and m["dims"]["layers"] == 2
    assert m["special_ids"]["cls"] == 0 and m["special_ids"]["pad"] == 1
    assert m["special_ids"]["eos"] == 2 and m["special_ids"]["unk"] == 3
    assert m["sparse_skip_ids"] == [0, 1, 2, 3]
    assert m["max_length"] == 8192  # 8194 positions, RoBERTa offsets by pad id + 1
    assert {"torch", "onnx", "onnxruntime", "tokenizers", "transformers"} <= set(m["versions"])
    assert m["external_data"] is None
    files = {p.name for p in tiny_artifact.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == files and {"model.onnx", "tokenizer.json", "tokenizer_config.json"} <= files
    for name, digest in m["files"].items():
        assert sha256_file(tiny_artifact / name) == digest
    report = m["validation"]["outputs"]
    assert set(report) == {"dense_vecs", "sparse_weights", "colbert_vecs"}
    assert all(0 <= v["max_abs_err"] <= v["tolerance"] for v in report.values())
    lengths = m["validation"]["probe_lengths"]
    assert len(set(lengths)) > 3 and min(lengths) == 2  # mixed lengths, the empty text among them


@pytest.mark.parametrize("head", ["colbert_linear.pt", "sparse_linear.pt"])
def test_missing_head_file_is_an_error(tiny_model_dir, tmp_path, head):
    from m3rt.export import export

    src = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (src / head).unlink()
    with pytest.raises(SourceError, match=head):
        export(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_head_shape_is_an_error(tiny_model_dir, tmp_path):
    import torch

    from m3rt.export import export

    src = shutil.copytree(tiny_model_dir, tmp_path / "model")
    torch.save(torch.nn.Linear(32, 64).state_dict(), src / "colbert_linear.pt")
    with pytest.raises(SourceError, match="colbert_linear.pt: weight shape"):
        export(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_validation_failure_names_the_output(tiny_model_dir, tmp_path, monkeypatch):
    from m3rt.export import export, validate

    monkeypatch.setitem(validate.ABS_TOLERANCE, "sparse_weights", -1.0)  # nothing can pass
    with pytest.raises(ExportValidationError, match="sparse_weights") as info:
        export(tiny_model_dir, tmp_path / "out")
    assert "dense_vecs" not in str(info.value) and "colbert_vecs" not in str(info.value)


def test_compare_reports_each_output():
    from m3rt.export.validate import compare

    rng = np.random.default_rng(0)
    ref = {"dense_vecs": rng.normal(size=(2, 8)), "sparse_weights": rng.random((2, 5)) * 3,
           "colbert_vecs": rng.normal(size=(2, 4, 8))}
    report = compare(ref, {k: v + 1e-6 for k, v in ref.items()})
    assert all(abs(r["max_abs_err"] - 1e-6) < 1e-9 for r in report.values())
    bad = dict(ref, colbert_vecs=ref["colbert_vecs"] + 1e-3)
    with pytest.raises(ExportValidationError, match="colbert_vecs"):
        compare(ref, bad)
    with pytest.raises(ExportValidationError, match="dense_vecs"):
        compare(ref, dict(ref, dense_vecs=ref["dense_vecs"] * np.nan))


def test_source_errors(tmp_path, monkeypatch):
    import huggingface_hub

    from m3rt.export import export

    with pytest.raises(SourceError, match="no such directory"):
        export(tmp_path / "absent", tmp_path / "out")

    def offline(**kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(SourceError, match="pass a local directory"):
        export("BAAI/bge-m3", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="config.json"):
        export(empty, tmp_path / "out")


def test_bad_options_and_existing_output(tiny_model_dir, tiny_artifact, tmp_path):
    from m3rt.export import export

    with pytest.raises(ValueError, match="precision"):
        export(tiny_model_dir, tmp_path / "a", precision="fp8")
    with pytest.raises(ValueError, match="opset"):
        export(tiny_model_dir, tmp_path / "a", opset=13)
    with pytest.raises(FileExistsError, match="not empty"):
        export(tiny_model_dir, tiny_artifact)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an m3rt artifact"):
        export(tiny_model_dir, other, overwrite=True)
    assert (other / "data.txt").read_text() == "keep me"


def test_external_data_one_file(tiny_model_dir, tmp_path, monkeypatch, runtime):
    """Over the protobuf limit the weights go to ONE data file beside the graph (limit lowered here)."""
    from m3rt import M3Runtime
    from m3rt.export import export, onnx_export

    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT", 1024)
    out = export(tiny_model_dir, tmp_path / "ext")
    m = json.loads((out / "manifest.json").read_text())
    assert m["external_data"] == "model.onnx.data"
    assert "model.onnx.data" in m["files"]
    assert (out / "model.onnx").stat().st_size < 200_000 < (out / "model.onnx.data").stat().st_size
    assert sorted(p.name for p in out.iterdir() if "onnx" in p.name) == ["model.onnx", "model.onnx.data"]
    texts = ["hello world", "北京"]
    a = M3Runtime(out).encode(texts, return_colbert_vecs=True)
    b = runtime.encode(texts, return_colbert_vecs=True)
    np.testing.assert_array_equal(a["dense_vecs"], b["dense_vecs"])


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("M3RT_SLOW"), reason="real bge-m3 shape (2.27 GB); set M3RT_SLOW=1")
def test_real_bge_m3_shape_exports_with_external_data(tmp_path):
    """24 layers, hidden 1024, vocab 250002, random weights: over 2 GB, so one external data file."""
    from m3rt import M3Runtime
    from m3rt.export import export
    from m3rt.testing.tiny_model import BGE_M3_SHAPE, build_tiny_model

    model = build_tiny_model(tmp_path / "big", **BGE_M3_SHAPE)
    out = export(model, tmp_path / "artifact")
    m = json.loads((out / "manifest.json").read_text())
    assert m["external_data"] == "model.onnx.data" and m["dims"]["vocab"] == 250002
    assert (out / "model.onnx.data").stat().st_size > 2 * 10**9
    print("validation", json.dumps(m["validation"]["outputs"]))
    enc = M3Runtime(out).encode(["hello world"], return_sparse=True, return_colbert_vecs=True)
    assert enc["dense_vecs"].shape == (1, 1024) and enc["colbert_vecs"][0].shape[1] == 1024


def test_hub_id_downloads_top_level_files(tiny_model_dir, tmp_path, monkeypatch):
    """A hub id goes through huggingface_hub (stubbed here: no network in tests), safetensors first."""
    import huggingface_hub

    from m3rt.export import export

    calls = []

    def fake_snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tiny_model_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    out = export("BAAI/bge-m3", tmp_path / "out")
    assert json.loads((out / "manifest.json").read_text())["source"] == "BAAI/bge-m3"
    assert len(calls) == 1 and calls[0][0] == "BAAI/bge-m3"
    assert "model.safetensors" in calls[0][1] and "pytorch_model.bin" not in calls[0][1]
    assert {"colbert_linear.pt", "sparse_linear.pt", "tokenizer.json"} <= set(calls[0][1])


def test_artifact_files_are_readable_by_other_users(tiny_model_dir, tmp_path):
    """onnx writes external data 0600; an artifact is read by services running as other users."""
    from m3rt.export import export

    umask = os.umask(0o022)  # the usual umask, whatever this process had
    try:
        out = export(tiny_model_dir, tmp_path / "a", precision="int8")  # int8 keeps its weights in a data file
    finally:
        os.umask(umask)
    assert (out / "model.onnx.data").is_file()
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path
