"""Head postprocessing (pure numpy): raw graph outputs of padded batches -> per-text results.

The graph already applied the heads (normalisation, relu, masking); what is left is cutting each row to its
real tokens, building the lexical weights exactly as FlagEmbedding does, cutting vectors to fewer dimensions
(re-normalised, as upstream's truncate_dim) and collecting a chunk's batches into one `Encoded`.
"""

from __future__ import annotations

import numpy as np

from m3rt.runtime.encoded import Encoded, PackedVectors, SparseRows


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


def lexical_dict(ids: np.ndarray, weights: np.ndarray) -> dict[str, np.float32]:
    """FlagEmbedding's lexical weights of one text: {str(token id): weight}, weights numpy float32 scalars."""
    return dict(zip(map(str, ids.tolist()), weights))


def lexical_weights(
    sparse_weights: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray, skip_ids: tuple[int, ...]
) -> list[dict[str, np.float32]]:
    """Per text of a raw batch: FlagEmbedding's lexical weights."""
    return [lexical_dict(ids, w) for ids, w in lexical_rows(sparse_weights, input_ids, lengths, skip_ids)]


def colbert_rows(colbert_vecs: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Per text: the first n - 1 vectors (CLS dropped, `</s>` kept), copied out of the batch buffer."""
    return [np.array(colbert_vecs[i, : int(n) - 1], dtype=np.float32) for i, n in enumerate(lengths)]


def renormalise(rows: np.ndarray) -> None:
    """In place, as torch's F.normalize: x / max(||x||, 1e-12) per row."""
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    rows /= norms


def cut(rows: np.ndarray, dim: int | None) -> np.ndarray:
    """Unit vectors cut to their first `dim` dimensions and re-normalised (upstream's truncate_dim cuts before
    normalising, which gives the same unit vectors); `rows` itself when dim is None or not below its width."""
    if dim is None or dim >= rows.shape[-1]:
        return rows
    out = np.array(rows[..., :dim], dtype=np.float32)
    renormalise(out)
    return out


class Collector:
    """Collects the heads of one chunk's batches (in any order) into one `Encoded` in input order.

    dense rows go straight into their place; lexical rows are kept per text; ColBERT rows are kept as views of
    the batches' outputs and packed with one copy at the end (filling the packed array batch by batch was
    slower: bench/results/design-notes.md), which holds at most the batches' padded size meanwhile."""

    def __init__(self, lengths: np.ndarray, outputs, *, hidden: int, colbert_dim: int, skip_ids: tuple[int, ...],
                 truncate_dim: int | None = None):
        n = len(lengths)
        self.lengths, self.outputs, self.skip_ids, self.truncate_dim = lengths, outputs, skip_ids, truncate_dim
        self.hidden, self.colbert_dim = hidden, colbert_dim
        self.dense = np.empty((n, hidden), dtype=np.float32) if "dense" in outputs else None
        self.lexical: list = [None] * n if "sparse" in outputs else []
        self.pieces: list = [None] * n if "colbert" in outputs else []

    def add(self, idx: np.ndarray, raw: dict[str, np.ndarray], input_ids: np.ndarray) -> None:
        """The raw outputs of the batch of texts `idx` (their padded `input_ids`)."""
        lengths = self.lengths[idx]
        if self.dense is not None:
            self.dense[idx] = dense_rows(raw["dense_vecs"])
        if "sparse" in self.outputs:
            for i, row in zip(idx, lexical_rows(raw["sparse_weights"], input_ids, lengths, self.skip_ids)):
                self.lexical[i] = row
        if "colbert" in self.outputs:
            out = raw["colbert_vecs"]
            for b, (i, m) in enumerate(zip(idx.tolist(), (lengths - 1).tolist())):
                self.pieces[i] = out[b, :m]

    def finish(self, start: int, truncated: np.ndarray, timings: dict[str, float]) -> Encoded:
        sparse = colbert = None
        dense = None if self.dense is None else cut(self.dense, self.truncate_dim)
        if "sparse" in self.outputs:
            sparse = _csr(self.lexical)
        if "colbert" in self.outputs:
            n = len(self.lengths)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.maximum(self.lengths - 1, 0), out=offsets[1:])
            vectors = (np.concatenate(self.pieces) if n else np.zeros((0, self.colbert_dim), np.float32)).astype(
                np.float32, copy=False)
            colbert = PackedVectors(cut(vectors, self.truncate_dim), offsets)
        return Encoded(start=start, lengths=self.lengths, truncated=truncated, dense=dense, sparse=sparse,
                       colbert=colbert, timings=timings)


def _csr(rows: list[tuple[np.ndarray, np.ndarray]]) -> SparseRows:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(ids) for ids, _ in rows], out=indptr[1:])
    if not rows:
        return SparseRows(indptr, np.zeros(0, np.int64), np.zeros(0, np.float32))
    return SparseRows(indptr, np.concatenate([ids for ids, _ in rows]).astype(np.int64, copy=False),
                      np.concatenate([w for _, w in rows]).astype(np.float32, copy=False))
