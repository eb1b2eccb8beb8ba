"""Batch planning and head postprocessing as pure functions, against plain-Python references."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from m3rt.runtime import heads
from m3rt.runtime.batching import pad_batch, plan_batches


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("batch_size, budget", [(4, 10_000), (256, 64), (3, 1), (256, 8192)])
def test_plan_batches(seed, batch_size, budget):
    lengths = np.random.default_rng(seed).integers(2, 300, size=57)
    batches = list(plan_batches(lengths, batch_size, budget))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(57))  # every text exactly once
    assert (np.diff(lengths[seen]) <= 0).all()  # longest first
    for b in batches:
        assert 1 <= len(b) <= batch_size
        assert len(b) == 1 or len(b) * lengths[b].max() <= budget
        assert len(b) * lengths[b].max() <= 1.25 * lengths[b].sum(), "padding within MAX_PADDING"


def test_plan_batches_stops_at_the_padding_limit_but_fills_equal_lengths():
    # Equal lengths batch fully; a long text does not drag short ones into its padded width.
    assert [len(b) for b in plan_batches(np.full(10, 50), 4, 10_000)] == [4, 4, 2]
    lengths = np.array([400, 390, 380, 20, 20, 19])
    assert [sorted(b.tolist()) for b in plan_batches(lengths, 8, 10_000)] == [[0, 1, 2], [3, 4, 5]]
    assert [len(b) for b in plan_batches(lengths, 8, 10_000, max_padding=100.0)] == [6]


def test_pad_batch_right_with_pad_id():
    ids, mask = pad_batch([np.array([0, 5, 2]), np.array([0, 2]), np.array([0, 7, 8, 9, 2])], pad_id=1)
    assert ids.tolist() == [[0, 5, 2, 1, 1], [0, 2, 1, 1, 1], [0, 7, 8, 9, 2]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert ids.dtype == mask.dtype == np.int64


def reference_lexical(weights, ids, skip):
    """FlagEmbedding's _process_token_weights, verbatim in logic."""
    result = defaultdict(int)
    for w, idx in zip(weights, ids):
        if idx not in skip and w > 0:
            idx = str(idx)
            if w > result[idx]:
                result[idx] = w
    return result


@pytest.mark.parametrize("seed", range(8))
def test_lexical_weights_match_reference(seed):
    rng = np.random.default_rng(seed)
    batch, width = 5, 40
    lengths = rng.integers(2, width + 1, size=batch)
    lengths[0] = width
    ids = rng.integers(0, 12, size=(batch, width))  # small vocab: many repeats and specials
    weights = np.maximum(rng.normal(size=(batch, width)), 0).astype(np.float32)
    weights[rng.random((batch, width)) < 0.2] = 0
    for i, n in enumerate(lengths):
        ids[i, n:] = 1
        weights[i, n:] = 9.0  # padding must never leak in
    got = heads.lexical_weights(weights, ids, lengths, (0, 1, 2, 3))
    for i, n in enumerate(lengths):
        ref = reference_lexical(weights[i, :n], ids[i, :n].tolist(), {0, 1, 2, 3})
        assert list(got[i]) == list(ref) and all(got[i][k] == ref[k] for k in ref)
        assert all(isinstance(v, np.float32) for v in got[i].values())


def test_colbert_rows_drop_cls_keep_eos():
    vecs = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    rows = heads.colbert_rows(vecs, np.array([6, 3]))
    assert rows[0].shape == (5, 3) and rows[1].shape == (2, 3)
    np.testing.assert_array_equal(rows[1], vecs[1, :2])
    rows[1][0, 0] = -1
    assert vecs[1, 0, 0] == 15  # a copy: results do not pin the batch buffer
