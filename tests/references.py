"""float64 references and seeded inputs for the kernel and scoring tests (a pytest plugin of tests/conftest.py):
a per-test seeded RNG, MaxSim references, unit vectors like BGE-M3's."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Seeded from the test id (plus M3RT_TEST_SEED): reproducible, but different per test/param."""
    seed = zlib.crc32(request.node.nodeid.encode()) ^ int(os.environ.get("M3RT_TEST_SEED", "0"))
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


def _ref_many(queries, q_off, docs, d_off) -> np.ndarray:
    """float64 MaxSim [n_q, n_docs] of (already rounded) inputs; empty doc -> 0."""
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(docs, dtype=np.float64)
    out = np.zeros((len(q_off) - 1, len(d_off) - 1))
    for j in range(len(d_off) - 1):
        if d_off[j + 1] == d_off[j]:
            continue
        sim = q @ d[d_off[j] : d_off[j + 1]].T
        rowmax = sim.max(axis=1)
        for i in range(len(q_off) - 1):
            out[i, j] = rowmax[q_off[i] : q_off[i + 1]].mean()
    return out


def _ref_pairs(queries, q_off, docs, d_off) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(docs, dtype=np.float64)
    out = np.zeros(len(q_off) - 1)
    for i in range(len(q_off) - 1):
        if d_off[i + 1] > d_off[i]:
            out[i] = (q[q_off[i] : q_off[i + 1]] @ d[d_off[i] : d_off[i + 1]].T).max(axis=1).mean()
    return out


def _vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """L2-normalised rows, like BGE-M3's ColBERT vectors."""
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _packed(rng: np.random.Generator, lengths, d: int) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _vectors(rng, int(offsets[-1]), d), offsets


@pytest.fixture
def ref_many():
    return _ref_many


@pytest.fixture
def ref_pairs():
    return _ref_pairs


@pytest.fixture
def vectors():
    return _vectors


@pytest.fixture
def packed():
    return _packed


def assert_scores(out, ref, tol: float) -> None:
    out = np.asarray(out, dtype=np.float64)
    assert out.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * scale)


@pytest.fixture
def check():
    return assert_scores
