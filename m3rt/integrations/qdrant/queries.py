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
"""

from __future__ import annotations

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

    def query(self, sides: list[str]):
        """The fusion of the prefetches `sides` (a sublist of [DENSE, SPARSE], in that order)."""
        from qdrant_client import models

        w = [self.weights[0 if s == DENSE else 1] for s in sides]
        if self.ranker == "rrf":
            weights = None if all(x == 1.0 for x in w) else w
            return models.RrfQuery(rrf=models.Rrf(k=int(self.rrf_k) + 1, weights=weights))
        terms = [models.MultExpression(mult=[x, f"$score[{i}]"]) for i, x in enumerate(w)]
        return models.FormulaQuery(formula=models.SumExpression(sum=terms),
                                   defaults={f"$score[{i}]": 0.0 for i in range(len(sides))})


@dataclass(frozen=True)
class EncodedQuery:
    dense: np.ndarray | None
    sparse: tuple[np.ndarray, np.ndarray] | None  # (token ids, weights); empty arrays for no lexical weight
    colbert: np.ndarray | None


def candidate_prefetches(q: EncodedQuery, candidates: int) -> tuple[list, list[str]]:
    """The dense and sparse prefetches of one query, and which sides they are."""
    from qdrant_client import models

    prefetches, sides = [], []
    if q.dense is not None:
        prefetches.append(models.Prefetch(query=q.dense, using=DENSE, limit=candidates))
        sides.append(DENSE)
    if q.sparse is not None and len(q.sparse[0]):
        prefetches.append(models.Prefetch(query=models.SparseVector(indices=q.sparse[0], values=q.sparse[1]),
                                          using=SPARSE, limit=candidates))
        sides.append(SPARSE)
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
