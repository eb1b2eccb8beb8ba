"""FlagEmbedding users' first line works: every BGEM3FlagModel constructor argument is accepted and does what
it means on an artifact, or says why it cannot."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from m3rt import BackendError, M3Runtime

# BGEM3FlagModel.__init__'s arguments (FlagEmbedding 1.4.2) and defaults, after model_name_or_path;
# test_upstream_signature_is_the_one_listed checks this against the installed FlagEmbedding.
UPSTREAM_DEFAULTS = dict(
    normalize_embeddings=True, use_fp16=True, use_bf16=False, query_instruction_for_retrieval=None,
    query_instruction_format="{}{}", devices=None, pooling_method="cls", trust_remote_code=False, cache_dir=None,
    colbert_dim=-1, batch_size=256, query_max_length=512, passage_max_length=512, return_dense=True,
    return_sparse=False, return_colbert_vecs=False, truncate_dim=None,
)


def test_every_upstream_argument_is_accepted(tiny_artifact, caplog):
    with caplog.at_level(logging.DEBUG, logger="m3rt.runtime"):
        rt = M3Runtime(tiny_artifact, **UPSTREAM_DEFAULTS, convert_to_numpy=True)
    assert rt.engine.name == "onnxruntime-cpu"
    assert any("use_fp16 / use_bf16 ignored on the CPU" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(rt.encode(["hi"])["dense_vecs"], M3Runtime(tiny_artifact).encode(["hi"])["dense_vecs"])
    assert M3Runtime(tiny_artifact, devices="cpu").engine.name == "onnxruntime-cpu"
    assert M3Runtime(tiny_artifact, devices=["cpu"], use_fp16=False).engine.name == "onnxruntime-cpu"


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(normalize_embeddings=False), ValueError, "normalize_embeddings=False: this artifact's graph outputs"),
    (dict(pooling_method="mean"), ValueError, "pooling_method='mean': bge-m3 pools the CLS token"),
    (dict(colbert_dim=32), ValueError, "colbert_dim=32: the artifact's ColBERT head has 64 dimensions"),
    (dict(devices=["cpu", "cuda:0"]), ValueError, "runs on one device"),
    (dict(devices="tpu"), ValueError, "expected 'cpu', 'cuda', 'cuda:N'"),
    (dict(convert_to_numpy=False), ValueError, "numpy arrays only"),
    (dict(devices="cpu", backend="onnxruntime-cuda"), ValueError, "disagree"),
])
def test_what_cannot_hold_says_so(tiny_artifact, kwargs, error, message):
    with pytest.raises(error, match=message):
        M3Runtime(tiny_artifact, **kwargs)


def test_a_gpu_device_is_never_a_silent_cpu_fallback(tiny_artifact):
    from m3rt.runtime.backends import GPU_BACKENDS, why_not
    from m3rt.artifact import read_manifest

    if any(why_not(b, read_manifest(tiny_artifact)) is None for b in GPU_BACKENDS):
        pytest.skip("a GPU backend can run here")
    with pytest.raises(BackendError, match="no GPU backend \\(devices asks for a GPU\\) can run here"):
        M3Runtime(tiny_artifact, devices="cuda:0")


def test_truncate_dim_cuts_and_renormalises(tiny_artifact):
    full = M3Runtime(tiny_artifact).encode(["hello world", "北京"], return_colbert_vecs=True)
    cut = M3Runtime(tiny_artifact, truncate_dim=16).encode(["hello world", "北京"], return_colbert_vecs=True)
    want = full["dense_vecs"][:, :16] / np.linalg.norm(full["dense_vecs"][:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(cut["dense_vecs"], want, atol=1e-6)
    for a, b in zip(full["colbert_vecs"], cut["colbert_vecs"]):
        np.testing.assert_allclose(b, a[:, :16] / np.linalg.norm(a[:, :16], axis=1, keepdims=True), atol=1e-6)


def test_upstream_signature_is_the_one_listed():
    import inspect

    flag = pytest.importorskip("FlagEmbedding")
    params = inspect.signature(flag.BGEM3FlagModel.__init__).parameters
    listed = {k: v.default for k, v in params.items() if k not in ("self", "model_name_or_path", "kwargs")}
    assert listed == UPSTREAM_DEFAULTS


