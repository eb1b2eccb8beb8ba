"""The Qdrant queries of a hybrid search, built from one encoded query.

Candidates: the `candidates` nearest by dense and by sparse score (one prefetch each), fused by
- "rrf": sum over the two lists of 1 / (rrf_k + rank / w), rank counted from 1 and w the list's weight (1 by
  default): with weights (1, 1) exactly Milvus's RRFRanker(rrf_k), the paper's formula. Qdrant's own
  constant counts ranks from 0, so it is given rrf_k + 1 (its default, 2, is a different fusion).
- "weighted": w_dense x dense score + w_sparse x sparse score, a candidate missing from a list counting 0
  there: BGE-M3's compute_score weighting of the raw scores (Milvus's WeightedRanker normalises them first).
One list alone (a query with no lexical weight, a collection storing one of the two) is not fused: its own
scores rank the hits. The ColBERT rerank is the outer query over the fused candidates: Qdrant's MAX_SIM, a SUM
over the query's vectors, which is len(query vectors) x m3rt's (FlagEmbedding's) mean MaxSim.
Fusion.fuse computes the same fusion in m3rt (local mode's candidates, local_search.py) with Qdrant's arithmetic,
so both give the same scores to the bit and the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from m3rt.integrations.qdrant.layout import COLBERT, DENSE, SPARSE

RANKERS = ("rrf", "weighted")


@dataclass(frozen=True)
class Fusion:
    ranker: str = "rrf"
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        if self.ranker not in RANKERS:
            raise ValueError(f"ranker must be 'rrf' or 'weighted', got {self.ranker!r}")
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, (int, np.integer)) or self.rrf_k < 0:
            raise ValueError(f"rrf_k must be an int >= 0, got {self.rrf_k!r}")
        weights = tuple(self.weights)
        if len(weights) != 2 or not all(isinstance(w, (int, float, np.integer, np.floating))
                                        and not isinstance(w, bool) for w in weights):
            raise ValueError(f"weights needs two numbers (dense, sparse), got {self.weights!r}")
        if any(not np.isfinite(w) or w < 0 for w in weights) or not any(weights):
            raise ValueError(f"weights must be finite, >= 0 and not both 0, got {self.weights!r}")
        object.__setattr__(self, "weights", (float(weights[0]), float(weights[1])))

    def side_weights(self, sides: list[str]) -> list[float]:
        return [self.weights[0 if s == DENSE else 1] for s in sides]

    def query(self, sides: list[str]):
        """The fusion of the prefetches `sides` (a sublist of [DENSE, SPARSE], in that order)."""
        from qdrant_client import models

        w = self.side_weights(sides)
        if self.ranker == "rrf":
            weights = None if all(x == 1.0 for x in w) else w
            return models.RrfQuery(rrf=models.Rrf(k=int(self.rrf_k) + 1, weights=weights))
        terms = [models.MultExpression(mult=[x, f"$score[{i}]"]) for i, x in enumerate(w)]
        return models.FormulaQuery(formula=models.SumExpression(sum=terms),
                                   defaults={f"$score[{i}]": 0.0 for i in range(len(sides))})


    def fuse(self, sides: list[str], ranked: list[list[tuple]], limit: int) -> list[tuple]:
        """The best `limit` (id, fused score) of ranked lists [(id, score), best first], one per side, as Qdrant's
        query(sides) computes them: rrf sums 1 / ((rank0 + 1.0) / w + k - 1.0) with Qdrant's k (rrf_k + 1) and
        0.0 for a weight of 0; weighted sums w x score per list (0.0 where a point is missing) with the builtin
        sum, as float32. Both then sort stably, best first, the points in the order first met (dense first)."""
        w = self.side_weights(sides)
        if self.ranker == "rrf":
            k = int(self.rrf_k) + 1
            fused: dict = {}
            for weight, hits in zip(w, ranked):
                for pos, (pid, _) in enumerate(hits):
                    s = 0.0 if weight <= 0 else 1 / ((pos + 1.0) / weight + k - 1.0)
                    fused[pid] = fused[pid] + s if pid in fused else s
            out = list(fused.items())
        else:
            scores = [dict(hits) for hits in ranked]
            out = []
            for pid in dict.fromkeys(pid for hits in ranked for pid, _ in hits):
                total = sum(_product(weight, found.get(pid, 0.0)) for weight, found in zip(w, scores))
                out.append((pid, float(np.float32(total))))
        out.sort(key=lambda item: item[1], reverse=True)
        return out[:limit]


def _product(weight: float, score: float) -> float:
    """weight x score as Qdrant's formula evaluates a product: 0.0 as soon as a factor is 0."""
    if weight == 0.0:
        return weight
    if score == 0.0:
        return score
    return math.prod([weight, score])


@dataclass(frozen=True)
class EncodedQuery:
    dense: np.ndarray | None
    sparse: tuple[np.ndarray, np.ndarray] | None  # (token ids, weights); empty arrays for no lexical weight
    colbert: np.ndarray | None


def query_sides(q: EncodedQuery) -> list[str]:
    """Which lists a query searches: dense when it has a dense vector, sparse when it has a lexical weight."""
    return ([DENSE] if q.dense is not None else []) + ([SPARSE] if q.sparse is not None and len(q.sparse[0]) else [])


def candidate_prefetches(q: EncodedQuery, candidates: int) -> tuple[list, list[str]]:
    """The dense and sparse prefetches of one query, and which sides they are."""
    from qdrant_client import models

    sides = query_sides(q)
    prefetches = [models.Prefetch(query=q.dense, using=DENSE, limit=candidates) if s == DENSE else
                  models.Prefetch(query=models.SparseVector(indices=q.sparse[0], values=q.sparse[1]), using=SPARSE,
                                  limit=candidates) for s in sides]
    return prefetches, sides


def candidates_request(q: EncodedQuery, fusion: Fusion, candidates: int, limit: int, with_payload):
    """One QueryRequest for the fused candidates (None when the query has nothing to search with)."""
    from qdrant_client import models

    prefetches, sides = candidate_prefetches(q, candidates)
    if not prefetches:
        return None
    if len(prefetches) == 1:  # one list: its own scores
        p = prefetches[0]
        return models.QueryRequest(query=p.query, using=p.using, limit=limit, with_payload=with_payload)
    return models.QueryRequest(prefetch=prefetches, query=fusion.query(sides), limit=limit,
                               with_payload=with_payload)


def rerank_request(q: EncodedQuery, fusion: Fusion, candidates: int, limit: int, with_payload):
    """One QueryRequest: the fused candidates rescored by MAX_SIM against the stored ColBERT vectors, inside
    Qdrant. Without dense or sparse to search with, the ColBERT query alone (a MaxSim scan of the collection)."""
    from qdrant_client import models

    prefetches, sides = candidate_prefetches(q, candidates)
    if not prefetches:
        return models.QueryRequest(query=q.colbert, using=COLBERT, limit=limit, with_payload=with_payload)
    inner = prefetches[0] if len(prefetches) == 1 else models.Prefetch(
        prefetch=prefetches, query=fusion.query(sides), limit=candidates)
    return models.QueryRequest(prefetch=inner, query=q.colbert, using=COLBERT, limit=limit,
                               with_payload=with_payload)
