"""ColBERT token pruning: keep k of a passage's token vectors (real vectors, never merged ones).

A passage's ColBERT vectors are one per token (row j is token position j + 1: CLS is dropped, `</s>` kept), so
storing them costs ~100x a dense vector. Two ways to choose the k kept:
- "sparse": the k positions whose token weighs most in the passage's lexical (sparse) output, the head that says
  how much a token matters for matching. A position weighs its token's lexical weight in that passage (the max
  over the token's positions, as m3rt returns it), 0 for special tokens; ties keep the earlier position.
- "coverage": no model signal; greedily the vectors that best stand in for the dropped ones (each dropped vector
  has a kept one close to it: a facility-location choice on the passage's own cosine similarities), so that a
  query token's best match loses little. It costs O(n^2 k) per passage at indexing.
Both always keep `</s>` (the last row): it carries the passage's summary and weighs 0 in the lexical output.

The vector norm is no signal: m3rt's graph L2-normalises every ColBERT vector, so all norms are 1.
Queries are never pruned: MaxSim sums over query vectors, and a query is short anyway.
This module is numpy only; which tokens a row holds comes from the runtime's tokenizer (tokens_of).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIGNALS = ("sparse", "coverage")


@dataclass(frozen=True)
class Pruning:
    """keep: an int k (at most k vectors per passage) or a float in (0, 1) (that fraction of a passage's
    vectors, rounded up); by: "sparse" (the lexical weight) or "coverage" (see the module's docstring)."""

    keep: int | float
    by: str = "sparse"

    def __post_init__(self):
        keep = self.keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)):
            raise TypeError(f"colbert_keep must be an int (vectors per passage) or a float (a fraction), got "
                            f"{type(keep).__name__}")
        if isinstance(keep, (int, np.integer)):
            if keep < 1:
                raise ValueError(f"colbert_keep must keep at least 1 vector per passage, got {keep}")
            object.__setattr__(self, "keep", int(keep))
        elif not 0.0 < float(keep) < 1.0:
            raise ValueError(f"colbert_keep as a fraction must be in (0, 1), got {keep}; an int keeps k vectors")
        else:
            object.__setattr__(self, "keep", float(keep))
        if self.by == "norm":
            raise ValueError("prune_by='norm' ranks nothing: m3rt's ColBERT vectors are L2-normalised in the graph "
                             "(every norm is 1); prune_by='sparse' ranks positions by their lexical weight, "
                             "prune_by='coverage' by how well they stand in for the others")
        if self.by not in SIGNALS:
            raise ValueError(f"prune_by must be one of {SIGNALS}, got {self.by!r}")

    def count(self, n: int) -> int:
        """How many of a passage's n vectors are kept."""
        k = self.keep if isinstance(self.keep, int) else math.ceil(self.keep * n)
        return max(1, min(n, k))

    def as_metadata(self) -> dict:
        return {"keep": self.keep, "by": self.by}


def position_weights(token_ids: np.ndarray, sparse_ids: np.ndarray, sparse_weights: np.ndarray) -> np.ndarray:
    """The lexical weight of each ColBERT row of one passage: token_ids are the passage's tokens (specials
    included, as tokenized for encoding); row j is token j + 1. Tokens absent from the sparse row weigh 0."""
    row_tokens = np.asarray(token_ids[1:], dtype=np.int64)
    weights = np.zeros(len(row_tokens), dtype=np.float32)
    if len(sparse_ids):
        order = np.argsort(sparse_ids, kind="stable")
        sorted_ids = np.asarray(sparse_ids, dtype=np.int64)[order]
        at = np.clip(np.searchsorted(sorted_ids, row_tokens), 0, len(sorted_ids) - 1)
        hit = sorted_ids[at] == row_tokens
        weights[hit] = np.asarray(sparse_weights, dtype=np.float32)[order][at[hit]]
    return weights


def strongest_rows(weights: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of the k rows to keep: the last row (`</s>`) and the k - 1 heaviest others, ties to
    the earlier row."""
    n = len(weights)
    if k >= n:
        return np.arange(n)
    ranked = np.lexsort((np.arange(n - 1), -weights[:-1]))[: k - 1]  # weight descending, then position
    return np.sort(np.concatenate([ranked, [n - 1]])).astype(np.int64)


def covering_rows(vectors: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of k rows chosen greedily, `</s>` first, each next one the row that most raises
    sum_j max_kept cos(v_j, v_kept) (the coverage of every row by its closest kept row)."""
    n = len(vectors)
    if k >= n:
        return np.arange(n)
    v = np.asarray(vectors, dtype=np.float32)
    sim = v @ v.T
    taken = np.zeros(n, dtype=bool)
    taken[n - 1] = True
    best = sim[n - 1].copy()
    for _ in range(k - 1):
        gain = np.maximum(sim - best[None, :], 0.0).sum(axis=1)
        gain[taken] = -1.0
        pick = int(np.argmax(gain))
        taken[pick] = True
        np.maximum(best, sim[pick], out=best)
    return np.flatnonzero(taken).astype(np.int64)


def prune_passage(vectors: np.ndarray, pruning: Pruning, token_ids: np.ndarray | None = None,
                  sparse_ids: np.ndarray | None = None, sparse_weights: np.ndarray | None = None) -> np.ndarray:
    """One passage's kept ColBERT rows, in position order ("sparse" needs the passage's tokens and sparse row)."""
    keep = pruning.count(len(vectors))
    if keep >= len(vectors):
        return vectors
    if pruning.by == "coverage":
        return vectors[covering_rows(vectors, keep)]
    if token_ids is None or sparse_ids is None or sparse_weights is None:
        raise ValueError("prune_by='sparse' needs the passage's tokens and its sparse row")
    if len(token_ids) != len(vectors) + 1:
        raise ValueError(f"{len(vectors)} ColBERT vectors but {len(token_ids)} tokens: the tokens must be the ones "
                         "the passage was encoded from (same max_length)")
    return vectors[strongest_rows(position_weights(token_ids, sparse_ids, sparse_weights), keep)]


def tokens_of(runtime, texts: list[str], max_length: int | None) -> list[np.ndarray]:
    """The token ids each text was encoded from (the runtime's tokenizer, cut at the same max_length)."""
    limit = runtime.passage_max_length if max_length is None else runtime.check_max_length(max_length)
    return runtime.tokenizer.encode(texts, limit)
