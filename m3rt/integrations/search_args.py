"""The arguments of a vector-store integration's search(), checked the same way for every store."""

from __future__ import annotations

from m3rt.runtime.config import as_int
from m3rt.runtime.texts import check_texts


def search_args(queries, limit, candidates, default_candidates: int) -> tuple[bool, list[str], int, int]:
    """(one query given as a str, the queries as a list, limit, candidates): candidates defaults to
    max(limit, default_candidates) and is never below limit."""
    one = isinstance(queries, str)
    queries = [queries] if one else check_texts(queries, "queries")
    if not queries:
        raise ValueError("queries is empty: nothing to search")
    limit = as_int(limit, "limit", minimum=1)
    candidates = max(limit, default_candidates) if candidates is None else as_int(candidates, "candidates", minimum=1)
    if candidates < limit:
        raise ValueError(f"candidates ({candidates}) must be at least limit ({limit})")
    return one, queries, limit, candidates
