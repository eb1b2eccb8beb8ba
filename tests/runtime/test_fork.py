"""A runtime used in a parent keeps working in a forked child (multiprocessing fork, gunicorn --preload)."""

from __future__ import annotations

import numpy as np

from forking import in_forked_child


def test_encode_and_rerank_after_fork(runtime):
    passages = [f"passage {i} about search and ranking " * (1 + i % 7) for i in range(40)]
    parent = runtime.rerank("search ranking", passages), runtime.encode(passages[:3])["dense_vecs"]
    child = in_forked_child(lambda: (runtime.rerank("search ranking", passages),
                                     runtime.encode(passages[:3])["dense_vecs"]))
    assert [i for i, _ in child[0]] == [i for i, _ in parent[0]]
    np.testing.assert_allclose([s for _, s in child[0]], [s for _, s in parent[0]], atol=1e-6)
    np.testing.assert_array_equal(child[1], parent[1])
