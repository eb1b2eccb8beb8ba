"""onnxruntime-cuda's per-shape bound buffers, run through the same code bound on the CPU: bit-identical to a
fresh binding, results never overwritten by a later call, at most `bound_shapes` shapes kept, and concurrent
callers each get their own answer. (On a GPU, bench/device/gpu_bench.py repeats the identity check.)"""

from __future__ import annotations

import numpy as np
import pytest
from forking import errors_in_threads

from m3rt.artifact import OUTPUT_NAMES, read_manifest
from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.ort_cuda import OrtCudaEngine


class HostBoundEngine(OrtCudaEngine):
    device = "cpu"

    def providers(self, manifest, config):
        return [("CPUExecutionProvider", {})]


@pytest.fixture(scope="module")
def engine(tiny_artifact):
    with HostBoundEngine(read_manifest(tiny_artifact), RuntimeConfig()) as engine:
        yield engine


def _batch(rng, b, s):
    ids = rng.integers(5, 300, (b, s)).astype(np.int64)
    ids[:, 0] = 0
    mask = np.ones_like(ids)
    if b > 1:
        mask[-1, s // 2:] = 0
        ids[-1, s // 2:] = 1
    return ids, mask


def test_bound_equals_fresh_binding_and_is_bounded(engine):
    rng = np.random.default_rng(7)
    shapes = [(1, 16), (2, 32), (1, 16), (3, 8), (4, 8), (5, 8), (6, 8), (1, 16), (2, 32)]
    for b, s in shapes:
        for outputs in (OUTPUT_NAMES, ("dense_vecs",)):
            ids, mask = _batch(rng, b, s)
            got = engine.run(ids, mask, outputs)
            want = engine._run_unbound({"input_ids": ids, "attention_mask": mask}, outputs)
            assert list(got) == list(outputs)
            for name in outputs:
                np.testing.assert_array_equal(got[name], want[name])
            assert len(engine._bound) <= engine.bound_shapes


def test_results_survive_the_next_call_of_the_same_shape(engine):
    rng = np.random.default_rng(8)
    ids, mask = _batch(rng, 2, 24)
    engine.run(ids, mask, OUTPUT_NAMES)  # binds the shape
    first = engine.run(ids, mask, OUTPUT_NAMES)
    kept = {k: v.copy() for k, v in first.items()}
    other = engine.run(ids[:, ::-1].copy(), mask[:, ::-1].copy(), OUTPUT_NAMES)
    assert not np.array_equal(other["dense_vecs"], kept["dense_vecs"])
    for name in OUTPUT_NAMES:
        np.testing.assert_array_equal(first[name], kept[name])


def test_concurrent_callers_get_their_own_answers(engine):
    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(25):
            ids, mask = _batch(rng, 2, 32)
            got = engine.run(ids, mask, OUTPUT_NAMES)
            want = engine._run_unbound({"input_ids": ids, "attention_mask": mask}, OUTPUT_NAMES)
            if not all(np.array_equal(got[n], want[n]) for n in OUTPUT_NAMES):
                raise AssertionError(f"thread {seed}: another call's answer")

    errors = errors_in_threads(worker, 4)
    assert not errors, errors
