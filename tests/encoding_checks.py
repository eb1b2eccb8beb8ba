"""Shared by the tests of several tiers: what FlagEmbedding's outputs must equal, and fresh texts unlike the
exporter's probe sets."""

from __future__ import annotations

import random

import numpy as np

from m3rt.testing.tiny_model import CORPUS

ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)
TOL = 1e-5


def fresh_texts(n: int, seed: int) -> list[str]:
    """Texts unlike the exporter's probe set: random word sequences of 3-60 words from CORPUS."""
    words = " ".join(CORPUS).split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 60))) for _ in range(n)]


def assert_same_encoding(ours: dict, ref: dict, single: bool = False) -> None:
    assert set(ours) == {"dense_vecs", "lexical_weights", "colbert_vecs"}
    if ref["dense_vecs"] is None:
        assert ours["dense_vecs"] is None
    else:
        assert ours["dense_vecs"].dtype == np.float32
        assert ours["dense_vecs"].shape == ref["dense_vecs"].shape
        np.testing.assert_allclose(ours["dense_vecs"], ref["dense_vecs"], rtol=0, atol=TOL)
    for key in ("lexical_weights", "colbert_vecs"):
        if ref[key] is None:
            assert ours[key] is None
    ref_lex = [ref["lexical_weights"]] if single and ref["lexical_weights"] is not None else ref["lexical_weights"]
    our_lex = [ours["lexical_weights"]] if single and ours["lexical_weights"] is not None else ours["lexical_weights"]
    if ref_lex is not None:
        assert len(our_lex) == len(ref_lex)
        for a, b in zip(our_lex, ref_lex):
            assert list(a) == list(b), "same token ids, in the same order"
            for k in a:
                assert abs(float(a[k]) - float(b[k])) <= TOL, k
    ref_col = [ref["colbert_vecs"]] if single and ref["colbert_vecs"] is not None else ref["colbert_vecs"]
    our_col = [ours["colbert_vecs"]] if single and ours["colbert_vecs"] is not None else ours["colbert_vecs"]
    if ref_col is not None:
        assert len(our_col) == len(ref_col)
        for a, b in zip(our_col, ref_col):
            assert a.dtype == np.float32 and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
