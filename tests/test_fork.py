"""A runtime used in a parent keeps working in a forked child (multiprocessing fork, gunicorn --preload)."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest


def in_forked_child(fn, timeout: float = 60):
    """fn() run in a forked child; its pickled result, or a failure when the child hangs or dies."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, pickle.dumps(fn()))
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    assert data, "the forked child died without a result"
    return pickle.loads(data)


def test_encode_and_rerank_after_fork(runtime):
    passages = [f"passage {i} about search and ranking " * (1 + i % 7) for i in range(40)]
    parent = runtime.rerank("search ranking", passages), runtime.encode(passages[:3])["dense_vecs"]
    child = in_forked_child(lambda: (runtime.rerank("search ranking", passages),
                                     runtime.encode(passages[:3])["dense_vecs"]))
    assert [i for i, _ in child[0]] == [i for i, _ in parent[0]]
    np.testing.assert_allclose([s for _, s in child[0]], [s for _, s in parent[0]], atol=1e-6)
    np.testing.assert_array_equal(child[1], parent[1])
