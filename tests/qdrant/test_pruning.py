"""ColBERT token pruning: which rows are kept (by lexical weight, by coverage), that a pruned collection stores
exactly those rows of the encoded vectors and keeps its setting on reopening, and what pruning costs in
ranking against full MaxSim on the trained test model's multilingual set (real local-mode collections)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="the qdrant extra (qdrant-client) is not installed")

from multilingual_set import QUERIES, passages  # noqa: E402

from m3rt import M3Runtime  # noqa: E402
from m3rt.integrations.qdrant import HybridCollection, Pruning  # noqa: E402
from m3rt.integrations.qdrant.pruning import (  # noqa: E402
    covering_rows,
    position_weights,
    strongest_rows,
)


def test_strongest_rows_keep_the_heaviest_and_the_last():
    w = np.array([0.1, 0.9, 0.0, 0.5, 0.5, 0.3, 0.0], np.float32)  # the last row is </s>: weight 0
    assert strongest_rows(w, 3).tolist() == [1, 3, 6]  # 0.9, then the earlier 0.5, and </s>
    assert strongest_rows(w, 1).tolist() == [6]
    assert strongest_rows(w, 7).tolist() == list(range(7)) == strongest_rows(w, 99).tolist()


def test_position_weights_follow_the_tokens():
    tokens = np.array([0, 7, 9, 7, 4, 2])  # <s> 7 9 7 4 </s>: rows are tokens 1..5
    w = position_weights(tokens, np.array([9, 7]), np.array([0.2, 0.6], np.float32))
    np.testing.assert_array_equal(w, np.array([0.6, 0.2, 0.6, 0.0, 0.0], np.float32))


def test_covering_rows_stand_in_for_the_dropped_ones():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16))
    rows = np.concatenate([c + 0.01 * rng.standard_normal((4, 16)) for c in centres] + [rng.standard_normal((1, 16))])
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    kept = covering_rows(rows, 4)
    assert kept[-1] == 12 and len(kept) == 4
    assert sorted(int(k) // 4 for k in kept[:-1]) == [0, 1, 2]  # one row from each cluster


def test_pruning_settings_are_checked():
    assert Pruning(0.5).count(7) == 4 and Pruning(10).count(7) == 7 and Pruning(0.01).count(7) == 1
    with pytest.raises(TypeError, match="colbert_keep must be an int"):
        Pruning("half")
    with pytest.raises(ValueError, match="prune_by must be one of"):
        Pruning(4, by="idf")


@pytest.mark.parametrize("by", ["sparse", "coverage"])
def test_a_pruned_collection_stores_the_chosen_rows(runtime, tmp_path, by):
    texts = [" ".join(["river stone cloud market engine garden"] * r) for r in range(1, 6)] + ["a", ""]
    enc = runtime.encode_native(texts, return_dense=False, return_sparse=True, return_colbert_vecs=True)
    tokens = runtime.tokenizer.encode(texts, runtime.passage_max_length)
    with HybridCollection.create(tmp_path / "q", "pruned", runtime, colbert_dtype="float32", colbert_keep=0.5,
                                 prune_by=by) as col:
        col.insert(texts)  # one chunk, as encode_native: the same batches, the same floats (ties included)
        stored = {p.id: np.array(p.vector["colbert"], np.float32)
                  for p in col.client.retrieve(col.name, list(range(len(texts))), with_vectors=["colbert"])}
        per = col.stored.per_passage()
    kept_total = 0
    for i in range(len(texts)):
        full = enc.colbert.row(i)
        k = int(np.ceil(0.5 * len(full)))
        if by == "sparse":
            want = strongest_rows(position_weights(tokens[i], *enc.sparse.row(i)), k)
        else:
            want = covering_rows(full, k)
        np.testing.assert_array_equal(stored[i], full[want])
        assert want[-1] == len(full) - 1  # </s> kept
        kept_total += len(want)
    assert per["colbert_vectors"] == kept_total / len(texts)
    with HybridCollection(tmp_path / "q", "pruned", runtime) as col:
        assert col.pruning == Pruning(0.5, by)


def overlap_at_10(runtime, docs, pruning: Pruning | None, full_top: list[set] | None = None):
    """Top 10 of a ColBERT-only collection (MaxSim over every passage, inside Qdrant) per query, and the mean
    overlap with full_top."""
    keep = {} if pruning is None else {"colbert_keep": pruning.keep, "prune_by": pruning.by}
    with HybridCollection.create(":memory:", "ml", runtime, outputs=["colbert"], colbert_dtype="float32",
                                 **keep) as col:
        col.insert(docs)
        tops = [{h.id for h in hits} for hits in col.search(QUERIES, limit=10)]
    if full_top is None:
        return tops, 1.0
    return tops, float(np.mean([len(a & b) / 10 for a, b in zip(tops, full_top)]))


def test_pruning_cost_against_full_maxsim_on_the_trained_model(minilm_artifacts):
    """TRAINED weights (all-MiniLM-L6-v2 with random M3 heads): top-10 overlap of pruned against full MaxSim.
    Floors a little under what bench/qdrant_hybrid.py measured (bench/results/qdrant-hybrid.md): the sparse signal
    comes from this model's random lexical head, so it ranks tokens worse than coverage does."""
    docs = passages()
    with M3Runtime(minilm_artifacts["fp32"]) as rt:
        full, _ = overlap_at_10(rt, docs, None)
        _, sparse_half = overlap_at_10(rt, docs, Pruning(0.5, "sparse"), full)
        _, cover_half = overlap_at_10(rt, docs, Pruning(0.5, "coverage"), full)
        _, cover_3q = overlap_at_10(rt, docs, Pruning(0.75, "coverage"), full)
    assert sparse_half >= 0.75, sparse_half
    assert cover_half >= 0.85, cover_half
    assert cover_3q >= 0.92 and cover_3q >= cover_half, (cover_3q, cover_half)
