"""Head postprocessing: raw graph outputs of one padded batch -> per-text results (pure numpy).

The graph already applied the heads (normalisation, relu, masking); what is left is cutting each row
to its real tokens and building the lexical-weight dicts exactly as FlagEmbedding does.
"""

from __future__ import annotations

import numpy as np


def dense_rows(dense_vecs: np.ndarray) -> np.ndarray:
    """[B, H] unit vectors (CLS pooling, L2-normalised in the graph)."""
    return np.asarray(dense_vecs, dtype=np.float32)


def lexical_rows(
    sparse_weights: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray, skip_ids: tuple[int, ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per text: (token ids int64, max relu weight float32), over real tokens, skipping special ids and
    weights <= 0, in order of first occurrence (FlagEmbedding builds a dict while scanning the tokens)."""
    keep = (sparse_weights > 0) & ~np.isin(input_ids, np.asarray(skip_ids, dtype=input_ids.dtype))
    keep &= np.arange(input_ids.shape[1])[None, :] < np.asarray(lengths)[:, None]
    out = []
    for ids_row, w_row, k in zip(input_ids, sparse_weights, keep):
        ids, w = ids_row[k], w_row[k]
        if ids.size == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
            continue
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        best = np.full(uniq.shape, -np.inf, dtype=np.float32)
        np.maximum.at(best, inverse, w)
        order = np.argsort(first)
        out.append((uniq[order].astype(np.int64), best[order]))
    return out


def lexical_weights(
    sparse_weights: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray, skip_ids: tuple[int, ...]
) -> list[dict[str, np.float32]]:
    """Per text: FlagEmbedding's {str(token_id): weight} (lexical_rows as dicts)."""
    return [dict(zip(map(str, ids.tolist()), w))
            for ids, w in lexical_rows(sparse_weights, input_ids, lengths, skip_ids)]


def colbert_rows(colbert_vecs: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Per text: the first n - 1 vectors (CLS dropped, `</s>` kept), copied out of the batch buffer."""
    return [np.array(colbert_vecs[i, : int(n) - 1], dtype=np.float32) for i, n in enumerate(lengths)]
