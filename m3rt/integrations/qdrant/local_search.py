"""A local-mode collection's fused dense + sparse candidates, computed by m3rt from the stored vectors.

Local mode answers a hybrid query with a numpy dot product for the dense list, a Python loop over every point
for the sparse one, and Python fusion. Here the same lists come from copies kept beside local mode's arrays: a
float64 copy of the dense matrix (local mode multiplies its float32 matrix by the query in float64, converting
the matrix on every query) and a token -> points index of the sparse vectors (sparse_index.py). The answer is
local mode's own: the same scores to the bit, the same order (its argsort of every point's score, reversed,
then its mask of deleted points and missing vectors, ties included), the same fusion arithmetic
(Fusion.fuse). Tests check this against Qdrant's query on the same collection.

The copies follow the collection, whoever writes to it (this object, another one on the same client, the
client itself): each search compares the collection's per-point objects with the ones last seen (an upsert
replaces a point's payload and sparse objects: see LocalView), copies the rewritten and appended points, and
starts again when the collection was dropped and made again. Deletions are read on every search. Not seen: a
dense vector rewritten alone by the client's update_vectors (local mode writes it in place and replaces no
object); search with candidates_in="qdrant" after such writes.
"""

from __future__ import annotations

import operator

import numpy as np

from m3rt.integrations.qdrant.layout import DENSE, SPARSE, Layout
from m3rt.integrations.qdrant.queries import EncodedQuery, Fusion, query_sides
from m3rt.integrations.qdrant.sparse_index import SparseIndex
from m3rt.integrations.qdrant.stored_vectors import LocalView, local_view, sparse_rows


class LocalSearch:
    def __init__(self, client, name: str, layout: Layout):
        self.client, self.name = client, name
        self.outputs = tuple(o for o, on in ((DENSE, layout.dense), (SPARSE, layout.sparse)) if on)
        self._owner, self._seen, self._sparse_seen = None, [], []
        local_view(client, name, self.outputs)  # fail here, before any search, if local mode differs

    def fused(self, queries: list[EncodedQuery], fusion: Fusion, candidates: int,
              limit: int) -> list[list[tuple]]:
        """Per query, the best `limit` (point id, score) of Qdrant's candidates_request: its `candidates`
        nearest by dense and by sparse score fused, or one list's own best `limit` when it searches one."""
        view = local_view(self.client, self.name, self.outputs)
        self._follow(view)
        live = {side: view.live(side) for side in self.outputs}
        results = []
        for q in queries:
            sides = query_sides(q)
            if len(sides) == 2:
                ranked = [self._nearest(view, side, q, live[side], candidates) for side in sides]
                results.append(fusion.fuse(sides, ranked, limit))
            else:  # one list or none: no fusion, as candidates_request
                results.append(self._nearest(view, sides[0], q, live[sides[0]], limit) if sides else [])
        return results

    def _nearest(self, view: LocalView, side: str, q: EncodedQuery, live: np.ndarray, k: int) -> list[tuple]:
        """The k best (id, score) of one list, as local mode's search ranks and scores them."""
        if side == DENSE:
            scores = np.dot(self._dense, q.dense.astype(np.float64))
            order = np.argsort(scores)[::-1]
            slots = order[live[order]][:k]
        else:
            scores = self._sparse.scores(*q.sparse)
            order = np.argsort(scores)[::-1]
            slots = order[live[order] & (scores[order] != -np.inf)][:k]
        ids = view.ids
        return [(ids[i], float(s)) for i, s in zip(slots.tolist(), scores[slots].tolist())]

    def _follow(self, view: LocalView) -> None:
        """Bring the dense copy and the sparse index up to the collection's points."""
        n = len(view)
        if view.owner is not self._owner or n < len(self._seen):
            self._owner, self._seen, self._sparse_seen = view.owner, [], []
            self._dense = np.zeros((0, view.dense.shape[1]), np.float64) if view.dense is not None else None
            self._sparse = SparseIndex() if view.sparse is not None else None
        seen = len(self._seen)
        rewritten = _replaced(view.payload, self._seen)
        if view.sparse is not None:
            rewritten |= _replaced(view.sparse, self._sparse_seen)
        if n == seen and not rewritten:
            return
        if self._dense is not None:
            if rewritten:
                slots = sorted(rewritten)
                self._dense[slots] = view.dense[slots]
            if n > seen:
                self._dense = np.concatenate([self._dense, view.dense[seen:n].astype(np.float64)])
        if self._sparse is not None:
            if rewritten:  # rebuilt: rows are appended only
                self._sparse, seen_sparse = SparseIndex(), 0
            else:
                seen_sparse = seen
            self._sparse.append(*sparse_rows(view, seen_sparse, n))
            self._sparse_seen = view.sparse[:n]
        self._seen = view.payload[:n]


def _replaced(current: list, seen: list) -> set[int]:
    """The slots (of those in `seen`) whose object is no longer the one seen."""
    if all(map(operator.is_, current, seen)):
        return set()
    return {i for i, (a, b) in enumerate(zip(current, seen)) if a is not b}
