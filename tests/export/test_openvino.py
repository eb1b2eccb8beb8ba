"""The OpenVINO engine and the precisions it runs (int8-static, bf16), against onnxruntime's fp32 graph batch by
batch (padded batches, one-token texts, long ones), with the fidelity gates on the TRAINED test model; what it
refuses, and why; the backend "auto" picks per precision; the compiled-model cache."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the openvino extra is not installed")
pytest.importorskip("nncf", reason="nncf (int8-static exports) is not installed")

from encoding_checks import ALL, fresh_texts  # noqa: E402
from m3rt import BackendError, M3Runtime  # noqa: E402
from m3rt.runtime import fidelity  # noqa: E402


@pytest.fixture(scope="module")
def tiny_std(tiny_model_dir, tmp_path_factory):
    """The tiny model as fp32 (standard attention), bf16 and int8-static artifacts."""
    from m3rt.export import export

    root = tmp_path_factory.mktemp("ov")
    return {p: export(tiny_model_dir, root / p, precision=p, attention="standard", enforce_fidelity=False)
            for p in ("fp32", "bf16", "int8-static")}


@pytest.fixture(scope="module")
def minilm_ov(minilm_m3_dir, minilm_artifacts, tmp_path_factory):
    """The TRAINED model as int8-static and bf16, the gates enforced."""
    from m3rt.export import export

    root = tmp_path_factory.mktemp("minilm-ov")
    return {p: export(minilm_m3_dir, root / p, precision=p) for p in ("int8-static", "bf16")}


# Texts unlike any calibration text: one letter, empty ones, one token repeated to the cut.
DEGENERATE = [["a"], [""] * 3, ["x " * 600]]


def batches(texts: list[str], rng: random.Random) -> list[list[str]]:
    """Padded batches of mixed lengths and single texts."""
    rng.shuffle(texts)
    out, i = [], 0
    while i < len(texts):
        n = rng.choice([1, 2, 7, 16])
        out.append(texts[i:i + n])
        i += n
    return out


def test_openvino_f32_equals_onnxruntime_fp32_batch_by_batch(tiny_std):
    """OpenVINO on the fp32 artifact computes in f32 (it would pick bf16 by itself on such CPUs): every batch,
    padded or not, gives onnxruntime's numbers."""
    ov = M3Runtime(tiny_std["fp32"], backend="openvino")
    ort = M3Runtime(tiny_std["fp32"], backend="cpu")
    assert ov.engine.name == "openvino-cpu" and "32" in ov.engine.precision
    for texts in batches(fresh_texts(80, seed=3), random.Random(3)) + DEGENERATE:
        a, b = ov.encode(texts, **ALL), ort.encode(texts, **ALL)
        np.testing.assert_allclose(a["dense_vecs"], b["dense_vecs"], atol=2e-5)
        for x, y in zip(a["colbert_vecs"], b["colbert_vecs"]):
            np.testing.assert_allclose(x, y, atol=2e-5)
        for x, y in zip(a["lexical_weights"], b["lexical_weights"]):
            assert list(x) == list(y)


@pytest.mark.parametrize("precision", ["int8-static", "bf16"])
def test_reduced_precisions_pass_their_gates_on_trained_weights_batch_by_batch(minilm_ov, minilm_artifacts,
                                                                               precision):
    manifest = json.loads((minilm_ov[precision] / "manifest.json").read_text())
    report = manifest["validation"][precision]
    assert report["enforced"] and report["failed"] == []
    rt = M3Runtime(minilm_ov[precision])
    assert rt.engine.name == "openvino-cpu"
    ref = M3Runtime(minilm_artifacts["fp32"])
    worst = {}
    for texts in batches(fresh_texts(60, seed=11), random.Random(11)):
        ids, mask = _batch(ref, texts)
        metrics = fidelity.measure(ref.engine.run(ids, mask, fidelity_outputs()), rt.engine.run(
            ids, mask, fidelity_outputs()), ids, mask, ref.manifest.sparse_skip_ids)
        for k, v in metrics.items():
            worst[k] = v if k not in worst else (max if k == "sparse_max_rel_err" else min)(worst[k], v)
    dense = {"int8-static": 0.99, "bf16": 0.999}[precision]
    assert worst["dense_min_cosine"] >= dense and worst["colbert_mean_cosine"] >= 0.98, worst
    # Texts unlike any calibration text cost a calibrated int8 graph more (its activation ranges are fixed):
    # still finite, still close.
    for texts in DEGENERATE:
        ids, mask = _batch(ref, texts)
        got = rt.engine.run(ids, mask, fidelity_outputs())
        assert all(np.isfinite(v).all() for v in got.values())
        cos = np.sum(got["dense_vecs"] * ref.engine.run(ids, mask, ("dense_vecs",))["dense_vecs"], axis=1)
        assert cos.min() >= 0.98, (texts[0][:20], cos)


def fidelity_outputs():
    from m3rt.artifact import OUTPUT_NAMES

    return OUTPUT_NAMES


def _batch(rt, texts):
    from m3rt.runtime.batching import tokenized_batch

    return tokenized_batch(rt.tokenizer, texts, 256)


def test_int8_static_is_more_faithful_than_dynamic_int8_on_trained_weights(minilm_ov, minilm_artifacts):
    static = json.loads((minilm_ov["int8-static"] / "manifest.json").read_text())["validation"]["int8-static"]
    dynamic = json.loads((minilm_artifacts["int8"] / "manifest.json").read_text())["validation"]["int8"]
    assert static["metrics"]["dense_min_cosine"] > dynamic["metrics"]["dense_min_cosine"]
    assert static["metrics"]["colbert_mean_cosine"] > dynamic["metrics"]["colbert_mean_cosine"]


def test_what_each_engine_refuses_says_why(tiny_std, tiny_artifact, minilm_artifacts):
    with pytest.raises(BackendError, match="OpenVINO needs an artifact exported with --attention standard"):
        M3Runtime(tiny_artifact, backend="openvino")
    with pytest.raises(BackendError, match="onnxruntime's dynamic int8 .* which OpenVINO computes wrongly"):
        M3Runtime(minilm_artifacts["int8"], backend="openvino")
    with pytest.raises(BackendError, match="an OpenVINO model .* onnxruntime reads ONNX only"):
        M3Runtime(tiny_std["int8-static"], backend="cpu")


def test_auto_picks_per_precision_and_bf16_falls_back_to_exact_fp32(tiny_std, tiny_artifact, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="m3rt.runtime"):
        assert M3Runtime(tiny_std["int8-static"]).engine.name == "openvino-cpu"
    assert "CPU engines for int8-static on" in caplog.text
    assert M3Runtime(tiny_std["bf16"]).engine.name == "openvino-cpu"
    assert M3Runtime(tiny_std["fp32"]).engine.name == "onnxruntime-cpu"
    assert M3Runtime(tiny_artifact).engine.name == "onnxruntime-cpu"
    # Without OpenVINO a bf16 artifact runs as its fp32 graph on onnxruntime: exact, slower, never refused.
    exact = M3Runtime(tiny_std["bf16"], backend="cpu").encode(["hello world"])["dense_vecs"]
    fp32 = M3Runtime(tiny_std["fp32"], backend="cpu").encode(["hello world"])["dense_vecs"]
    np.testing.assert_array_equal(exact, fp32)


def test_compiled_models_are_cached_and_concurrent_calls_are_safe(tiny_std, tmp_path):
    rt = M3Runtime(tiny_std["int8-static"], engine_cache_dir=str(tmp_path / "cache"))
    assert any((tmp_path / "cache").rglob("*.blob"))
    texts = [f"text number {i} " * (1 + i % 30) for i in range(40)]
    want = rt.encode(texts)["dense_vecs"]
    got, errors = {}, []

    def worker(k):
        try:
            got[k] = rt.encode(texts)["dense_vecs"]
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(np.array_equal(v, want) for v in got.values())


def test_cli_export_int8_static_with_a_calibration_file(tiny_model_dir, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(f"domain sentence number {i} about search and ranking" for i in range(40)) + "\n")
    res = subprocess.run([sys.executable, "-m", "m3rt.cli", "export", str(tiny_model_dir), "--out",
                          str(tmp_path / "a"), "--precision", "int8-static", "--calibration", str(calib),
                          "--no-enforce-fidelity"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["validation"]["int8-static"]["calibration"] == "calib.txt"
    assert manifest["attention"] == "standard" and manifest["graph"] == "model.xml"
    (tmp_path / "bad.txt").write_text("too\nfew\n")
    res = subprocess.run([sys.executable, "-m", "m3rt.cli", "export", str(tiny_model_dir), "--out",
                          str(tmp_path / "b"), "--precision", "int8-static", "--calibration", str(tmp_path / "bad.txt")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1 and "calibration needs at least 8 texts" in res.stderr and not (tmp_path / "b").exists()
    res = subprocess.run([sys.executable, "-m", "m3rt.cli", "export", str(tiny_model_dir), "--out",
                          str(tmp_path / "c"), "--precision", "bf16", "--attention", "fused"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1 and "needs --attention standard" in res.stderr
