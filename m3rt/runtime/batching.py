"""Length-sorted batches under a batch size AND a padded-token budget, and right padding."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


# Padded tokens a batch may add over its real ones: padding is pure waste (on the CPU a batch of texts of
# mixed lengths ran several times slower per token than the same texts one by one: bench/results/design-notes.md).
MAX_PADDING = 0.25


def plan_batches(lengths: np.ndarray, batch_size: int, max_batch_tokens: int,
                 max_padding: float = MAX_PADDING) -> Iterator[np.ndarray]:
    """Yield index arrays, longest texts first, each batch within `batch_size` rows, `max_batch_tokens`
    padded tokens (rows x its longest row) and `max_padding` x its real tokens of padding. A text longer
    than the budget goes alone: it is never dropped.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    start, n = 0, len(order)
    while start < n:
        longest = int(lengths[order[start]])  # sorted: the first row sets the padded width
        cap = min(n, start + max(1, min(batch_size, max_batch_tokens // max(longest, 1))))
        end, real = start + 1, longest
        # Rows come shortest-last, so once the padding is over the limit, more rows only add to it.
        while end < cap and (end + 1 - start) * longest <= (1 + max_padding) * (real + int(lengths[order[end]])):
            real += int(lengths[order[end]])
            end += 1
        yield order[start:end]
        start = end


def pad_batch(rows: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad with `pad_id` (position ids derive from input_ids != pad, so it must be right and be pad)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def tokenized_batch(tokenizer, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """`texts` tokenized (cut at max_length) and right-padded into one batch: (input_ids, attention_mask)."""
    return pad_batch(tokenizer.encode(texts, max_length), tokenizer.pad_id)
