"""Scores between encoded texts, as FlagEmbedding's BGEM3FlagModel computes them (pure functions).

ColBERT MaxSim goes through m3rt.kernels (packed documents, blocked products).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def lexical_matching_score(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """sum over tokens in both of a[t] * b[t], iterating `a` in its order (upstream's summation order)."""
    score = 0
    for token, weight in a.items():
        if token in b:
            score += weight * b[token]
    return score


def colbert_score(q_reps: np.ndarray, p_reps: np.ndarray) -> np.float32:
    """(1 / len(q)) * sum_i max_j q_i . p_j for one query and one passage."""
    from m3rt.kernels import maxsim

    q, p = _as_matrix(q_reps, "q_reps"), _as_matrix(p_reps, "p_reps")
    return np.float32(maxsim(q, p, np.array([0, len(p)], dtype=np.int64))[0])


def _as_matrix(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [tokens, dim], got shape {x.shape}")
    return x


def pair_scores(
    q_dense: np.ndarray, p_dense: np.ndarray,
    q_lexical: Sequence[Mapping[str, float]], p_lexical: Sequence[Mapping[str, float]],
    q_colbert: Sequence[np.ndarray], p_colbert: Sequence[np.ndarray],
    weights: Sequence[float], upstream_batch_size: int | None,
) -> dict[str, list[float]]:
    """compute_score's five keys for aligned lists of query and passage encodings.

    With `upstream_batch_size`, ColBERT follows upstream's compute_score exactly: there each chunk of
    that many pairs is padded to its longest passage, and the zero vectors of the padding take part in
    the max, so a passage shorter than its chunk's longest scores max(0, ...) per query token. We add
    one zero vector to exactly those passages. With None, no padding effect (as `colbert_score`).
    """
    from m3rt.kernels import maxsim_pairs, pack

    w_dense, w_sparse, w_colbert = (float(w) for w in weights)
    dense = np.einsum("ij,ij->i", q_dense, p_dense)
    sparse = np.array([lexical_matching_score(q, p) for q, p in zip(q_lexical, p_lexical)], dtype=np.float64)
    passages = list(p_colbert)
    if upstream_batch_size:
        n_rows = np.array([len(p) for p in passages])
        for start in range(0, len(passages), upstream_batch_size):
            chunk = slice(start, start + upstream_batch_size)
            longest = n_rows[chunk].max()
            for i in range(start, min(start + upstream_batch_size, len(passages))):
                if n_rows[i] < longest:
                    passages[i] = np.concatenate([passages[i], np.zeros((1, passages[i].shape[1]), passages[i].dtype)])
    q_packed, q_offsets = pack(list(q_colbert))
    p_packed, p_offsets = pack(passages)
    colbert = maxsim_pairs(q_packed, q_offsets, p_packed, p_offsets).astype(np.float64)
    return {
        "colbert": colbert.tolist(),
        "sparse": sparse.tolist(),
        "dense": dense.astype(np.float64).tolist(),
        "sparse+dense": ((sparse * w_sparse + dense * w_dense) / (w_sparse + w_dense)).tolist(),
        "colbert+sparse+dense": (
            (colbert * w_colbert + sparse * w_sparse + dense * w_dense) / (w_dense + w_sparse + w_colbert)
        ).tolist(),
    }
