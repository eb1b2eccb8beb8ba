"""The stored sparse vectors of a local-mode collection as a token -> points index, scored the way local mode
scores them.

Rows (one per slot) are appended as CSR arrays (indptr, token ids, weights); the first query after a change
builds the column-major (CSC) copy it reads: one slice of points per query token, so a query touches only the
points sharing one of its tokens. numpy alone: scipy's csc_matrix holds the same arrays, and the `qdrant` extra
does not bring scipy.

Scores equal local mode's to the bit: it sums query weight x stored weight over the shared tokens in ascending
token order, in Python floats (float64) from 0.0, then rounds to float32; a point sharing no token scores -inf
(a sparse search skips it). Here the products are float64 and np.bincount adds them per point in the order
given: ascending token order.
"""

from __future__ import annotations

import numpy as np


class SparseIndex:
    def __init__(self):
        self.indptr = np.zeros(1, dtype=np.int64)
        self.tokens = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros(0, dtype=np.float64)
        self._columns = None  # (column pointers, slots, weights) by token, built when first read

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def append(self, lengths: np.ndarray, tokens: np.ndarray, weights: np.ndarray) -> None:
        """Add rows: `lengths` entries each, their (token, weight) pairs concatenated in row order."""
        self.indptr = np.concatenate([self.indptr, self.indptr[-1] + np.cumsum(lengths)])
        self.tokens = np.concatenate([self.tokens, tokens])
        self.weights = np.concatenate([self.weights, weights])
        self._columns = None

    def scores(self, query_tokens: np.ndarray, query_weights: np.ndarray) -> np.ndarray:
        """float32 [rows]: the dot product of each row with the query (token ids, weights; any order), -inf for a
        row sharing no token."""
        n = len(self)
        if self._columns is None:
            self._columns = self._by_token()
        colptr, slots, weights = self._columns
        order = np.argsort(query_tokens, kind="stable")
        hit_slots, products = [], []
        for t, w in zip(query_tokens[order].tolist(), np.asarray(query_weights, np.float64)[order].tolist()):
            if 0 <= t < len(colptr) - 1 and colptr[t] < colptr[t + 1]:
                lo, hi = colptr[t], colptr[t + 1]
                hit_slots.append(slots[lo:hi])
                products.append(weights[lo:hi] * w)
        out = np.full(n, -np.inf, dtype=np.float32)
        if hit_slots:
            at = np.concatenate(hit_slots)
            total = np.bincount(at, weights=np.concatenate(products), minlength=n)
            shared = np.zeros(n, dtype=bool)
            shared[at] = True
            out[shared] = total[shared].astype(np.float32)
        return out

    def _by_token(self):
        rows = np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))
        order = np.argsort(self.tokens, kind="stable")
        width = int(self.tokens.max()) + 1 if len(self.tokens) else 0
        colptr = np.zeros(width + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.tokens, minlength=width), out=colptr[1:])
        return colptr, rows[order], self.weights[order]
