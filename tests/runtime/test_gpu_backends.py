"""GPU backends: what the CPU can check (profiles, backend selection and its messages) runs everywhere;
the tests marked `gpu` run each GPU backend against the CPU one and skip, with the reason, without a GPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from m3rt.runtime.profiles import pick, profiles_for, shape_strings

GPU_BACKENDS = ("onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


def test_profiles_cover_every_batch_the_runtime_plans():
    from m3rt.runtime.batching import plan_batches

    profiles = profiles_for(8192, 16384, 256)
    assert [p.max[1] for p in profiles] == [64, 256, 1024, 8192]
    assert all(a.max[1] + 1 == b.min[1] for a, b in zip(profiles, profiles[1:])), "buckets tile 1..8192"
    rng = np.random.default_rng(0)
    for _ in range(20):
        lengths = rng.integers(2, 8193, size=rng.integers(1, 600))
        for idx in plan_batches(lengths, 256, 16384):
            pick(profiles, len(idx), int(lengths[idx].max()))  # raises if no profile fits


def test_short_inputs_get_a_short_profile():
    profiles = profiles_for(8192, 16384, 256)
    assert profiles[pick(profiles, 1, 20)].max[1] == 64
    assert profiles[pick(profiles, 2, 8000)].max[1] == 8192


def test_no_profile_is_a_clear_error():
    # 16 rows of 8000 tokens is over the 16384-token budget the engine was built for.
    with pytest.raises(ValueError, match="no engine profile covers batch 16 x sequence 8000"):
        pick(profiles_for(8192, 16384, 256), 16, 8000)


def test_ort_tensorrt_shape_strings_repeat_inputs_per_profile():
    mins, opts, maxs = shape_strings(profiles_for(512, 4096, 32))
    assert mins.split(",")[:4] == ["input_ids:1x1", "attention_mask:1x1", "input_ids:1x65", "attention_mask:1x65"]
    assert maxs.split(",")[-1] == "attention_mask:15x512"  # 4096 // 257 rows in the 257-512 bucket


def test_named_gpu_backend_says_what_is_missing(tiny_artifact):
    from m3rt import M3Runtime
    from m3rt.errors import BackendError
    from m3rt.runtime.backends import why_not
    from m3rt.artifact import read_manifest

    for name in GPU_BACKENDS:
        why = why_not(name, read_manifest(tiny_artifact))
        if why is None:
            continue  # this machine can run it: the gpu tests below cover it
        with pytest.raises(BackendError, match=f"backend {name} cannot start: "):
            M3Runtime(tiny_artifact, backend=name)


def test_auto_logs_why_each_backend_was_skipped(tiny_artifact, caplog):
    from m3rt import M3Runtime

    with caplog.at_level(logging.DEBUG, logger="m3rt.runtime"):
        rt = M3Runtime(tiny_artifact)
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    from m3rt.runtime.backends import BACKENDS

    order = list(BACKENDS)
    assert [m.split("skipped ")[1].split(":")[0] for m in skipped] == order[: order.index(rt.engine.name)]
    assert all(len(m.split("skipped ")[1].split(": ", 1)[1]) > 10 for m in skipped), "every skip names its reason"


def test_artifact_kinds_gpu_backends_refuse(tiny_artifact, tmp_path):
    """int8 is CPU-only; TensorRT needs standard attention, and the native backend a built engine."""
    import json

    from m3rt.artifact import read_manifest
    from m3rt.runtime.ort_cuda import OrtCudaEngine
    from m3rt.runtime.ort_tensorrt import OrtTensorrtEngine
    from m3rt.runtime.tensorrt_engine import TensorRTEngine

    manifest = read_manifest(tiny_artifact)
    assert "attention" in OrtTensorrtEngine.unsuitable(manifest)
    assert "build-engine" in TensorRTEngine.unsuitable(manifest)
    int8 = type(manifest)(root=manifest.root, data=dict(manifest.data, precision="int8"))
    assert "CPU" in OrtCudaEngine.unsuitable(int8) and "CPU" in OrtTensorrtEngine.unsuitable(int8)
    assert OrtCudaEngine.unsuitable(manifest) is None
    json.dumps(manifest.data)  # the manifest stays plain JSON


def _gpu_reason(name, manifest):
    from m3rt.runtime.backends import why_not

    return why_not(name, manifest)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_backend_matches_cpu(backend, minilm_m3_dir, tmp_path_factory):
    """fp16 on the GPU against fp32 on the CPU: dense and colbert cosine >= 0.999."""
    from m3rt import M3Runtime
    from m3rt.artifact import read_manifest
    from m3rt.export import export

    root = tmp_path_factory.mktemp("gpu")
    fp16 = export(minilm_m3_dir, root / "fp16", precision="fp16",
                  attention="fused" if backend == "onnxruntime-cuda" else "standard")
    if backend == "tensorrt":
        reason = _gpu_reason("tensorrt", read_manifest(fp16))
        if reason and "build-engine" in reason:
            from m3rt.export.tensorrt_build import build_engine

            build_engine(fp16, max_batch_tokens=4096, batch_size=16)
    reason = _gpu_reason(backend, read_manifest(fp16))
    if reason:
        pytest.skip(f"{backend}: {reason}")
    fp32 = export(minilm_m3_dir, root / "fp32")
    texts = ["What is BGE M3?", "a", "Definition of BM25 " * 30, "北京是中国的首都。"]
    ref = M3Runtime(fp32, backend="cpu").encode(texts, return_sparse=True, return_colbert_vecs=True)
    got = M3Runtime(fp16, backend=backend, batch_size=2).encode(texts, return_sparse=True, return_colbert_vecs=True)
    assert np.sum(ref["dense_vecs"] * got["dense_vecs"], axis=1).min() >= 0.999
    for a, b in zip(ref["colbert_vecs"], got["colbert_vecs"]):
        assert a.shape == b.shape and np.sum(a * b, axis=1).mean() >= 0.999
