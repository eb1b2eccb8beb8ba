"""Length-sorted batches under a batch size AND a padded-token budget, and right padding."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def plan_batches(lengths: np.ndarray, batch_size: int, max_batch_tokens: int) -> Iterator[np.ndarray]:
    """Yield index arrays, longest texts first, each batch within `batch_size` rows and
    `max_batch_tokens` padded tokens (rows x its longest row). A text longer than the budget
    goes alone: it is never dropped.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    start, n = 0, len(order)
    while start < n:
        longest = int(lengths[order[start]])  # sorted: the first row sets the padded width
        rows = max(1, min(batch_size, max_batch_tokens // max(longest, 1)))
        yield order[start : start + rows]
        start += rows


def pad_batch(rows: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad with `pad_id` (position ids derive from input_ids != pad, so it must be right and be pad)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask
