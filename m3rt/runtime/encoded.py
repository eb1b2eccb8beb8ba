"""`Encoded`: the runtime's native result for a run of texts, in input order.

- dense:   float32 [n, H] unit vectors;
- sparse:  CSR rows: `indptr` int64 [n + 1], `token_ids` int64 [nnz], `weights` float32 [nnz] (per text, each
           token once with its largest weight, in order of first occurrence, specials skipped);
- colbert: packed vectors float32 [sum(n_i - 1), Hc] and `offsets` int64 [n + 1] (what m3rt.kernels takes).
FlagEmbedding's dict (lists of dicts and of arrays) is an adapter over it (`as_flag_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SparseRows:
    indptr: np.ndarray
    token_ids: np.ndarray
    weights: np.ndarray

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return self.token_ids[lo:hi], self.weights[lo:hi]

    def as_dicts(self) -> list[dict[str, np.float32]]:
        """FlagEmbedding's lexical weights: {str(token id): weight} per text (heads.lexical_dict)."""
        from m3rt.runtime.heads import lexical_dict

        return [lexical_dict(*self.row(i)) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.indptr) - 1


@dataclass(frozen=True)
class PackedVectors:
    vectors: np.ndarray
    offsets: np.ndarray

    def row(self, i: int) -> np.ndarray:
        return self.vectors[self.offsets[i]:self.offsets[i + 1]]

    def as_list(self) -> list[np.ndarray]:
        return [self.row(i) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class Encoded:
    """Encoded texts `start` .. `start + len(self)` of an input, in input order."""

    start: int
    lengths: np.ndarray  # tokens per text, specials included
    truncated: np.ndarray  # bool per text: cut at max_length
    dense: np.ndarray | None = None
    sparse: SparseRows | None = None
    colbert: PackedVectors | None = None
    # Seconds per pipeline stage (tokenize, plan, engine, heads) spent on these texts.
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.lengths)

    def rows(self, lo: int, hi: int) -> "Encoded":
        """Texts lo..hi of this chunk (copies: a slice outlives the chunk), start counted from this chunk's."""
        sparse = colbert = None
        if self.sparse is not None:
            a, b = self.sparse.indptr[lo], self.sparse.indptr[hi]
            sparse = SparseRows(self.sparse.indptr[lo:hi + 1] - a, self.sparse.token_ids[a:b].copy(),
                                self.sparse.weights[a:b].copy())
        if self.colbert is not None:
            a, b = self.colbert.offsets[lo], self.colbert.offsets[hi]
            colbert = PackedVectors(self.colbert.vectors[a:b].copy(), self.colbert.offsets[lo:hi + 1] - a)
        return Encoded(start=self.start + lo, lengths=self.lengths[lo:hi].copy(), truncated=self.truncated[lo:hi].copy(),
                       dense=None if self.dense is None else self.dense[lo:hi].copy(), sparse=sparse, colbert=colbert,
                       timings={})

    def as_flag_dict(self, single: bool = False) -> dict:
        """BGEM3FlagModel.encode's dict; `single`: the shapes of one text passed as a str."""
        dense = self.dense
        lexical = self.sparse.as_dicts() if self.sparse is not None else None
        vectors = self.colbert.as_list() if self.colbert is not None else None
        if single:
            dense = dense[0] if dense is not None else None
            lexical = lexical[0] if lexical is not None else None
            vectors = vectors[0] if vectors is not None else None
        return {"dense_vecs": dense, "lexical_weights": lexical, "colbert_vecs": vectors}


def concat(parts: list[Encoded]) -> Encoded:
    """One Encoded of consecutive chunks."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    timings: dict[str, float] = {}
    for p in parts:
        for k, v in p.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    sparse = colbert = None
    if first.sparse is not None:
        sizes = [len(p.sparse.token_ids) for p in parts]
        shifts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        sparse = SparseRows(
            indptr=np.concatenate([[0]] + [p.sparse.indptr[1:] + s for p, s in zip(parts, shifts)]).astype(np.int64),
            token_ids=np.concatenate([p.sparse.token_ids for p in parts]),
            weights=np.concatenate([p.sparse.weights for p in parts]))
    if first.colbert is not None:
        sizes = [len(p.colbert.vectors) for p in parts]
        shifts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        colbert = PackedVectors(
            vectors=np.concatenate([p.colbert.vectors for p in parts]),
            offsets=np.concatenate([[0]] + [p.colbert.offsets[1:] + s for p, s in zip(parts, shifts)]).astype(np.int64))
    return Encoded(
        start=first.start, lengths=np.concatenate([p.lengths for p in parts]),
        truncated=np.concatenate([p.truncated for p in parts]),
        dense=np.concatenate([p.dense for p in parts]) if first.dense is not None else None,
        sparse=sparse, colbert=colbert, timings=timings)
