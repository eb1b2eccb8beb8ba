"""m3rt's own candidate search in local mode (local_search.py): the fused dense + sparse candidates it computes
from local mode's stored arrays equal, to the bit and in order (ties included), both brute force over the stored
m3rt outputs and Qdrant's own query on the same collection, with and without the ColBERT rerank; and they follow
the collection: more inserts, a rerun that overwrites, another writer on the same client, deletions, a
collection made again, a reopened directory, any subset of outputs, passages and queries with no lexical weight."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="the qdrant extra (qdrant-client) is not installed")

from m3rt.integrations.qdrant import HybridCollection  # noqa: E402
from m3rt.integrations.qdrant.sparse_index import SparseIndex  # noqa: E402

WORDS = ("river stone cloud market engine garden letter window silver music forest harbor paper "
         "winter candle doctor bridge orange planet signal").split()
# "" has no lexical weight (nor a sparse vector as a passage); the repeated texts tie exactly in every list
QUERIES = ["river stone market", "silver planet signal window", "doctor", "orange music forest", "", "river stone"]
FUSIONS = [("rrf", (1.0, 1.0)), ("rrf", (2.0, 0.5)), ("weighted", (0.7, 0.3)), ("weighted", (1.0, 0.0))]


def corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, rng.integers(3, 25))) for _ in range(n)]
    return texts + ["river stone", "river stone", "doctor doctor", "", "...", "river stone", "doctor doctor"]


def stored(col) -> list:
    """Every point with its stored vectors, by id: the ids here are 0..n-1 in insertion order, local mode's order."""
    n = max(p.id for p in col.client.scroll(col.name, limit=1 << 20)[0]) + 1
    return col.client.retrieve(col.name, list(range(n)), with_vectors=True)


def ranked(scores: np.ndarray, k: int, ids: list, skip_inf: bool) -> list[tuple]:
    """The k best (id, score), best first: numpy's argsort reversed (local mode's order, ties included)."""
    order = [i for i in np.argsort(scores)[::-1] if not (skip_inf and scores[i] == -np.inf)]
    return [(ids[i], float(scores[i])) for i in order[:k]]


def brute_force(col, runtime, query: str, ranker: str, weights, candidates: int, limit: int, rrf_k: int = 60):
    """The fused candidates from the stored vectors: dense dot in float64; sparse dot summed in float64 over the
    shared tokens in ascending order, as float32 (-inf: no shared token); RRF sum 1 / (rrf_k + rank / w) from
    rank 1, or the weighted sum of the raw scores as float32; a stable sort, dense hits first."""
    points = stored(col)
    ids = [p.id for p in points]
    q = runtime.encode_queries([query], return_dense=True, return_sparse=True)
    lists, sides = [], []
    if col.layout.dense:
        dense = np.dot(np.array([p.vector["dense"] for p in points], np.float32), q["dense_vecs"][0].astype(np.float64))
        lists.append(dense)
        sides.append(False)
    lexical = {int(t): float(w) for t, w in q["lexical_weights"][0].items()}
    if col.layout.sparse and lexical:
        sparse = np.full(len(points), -np.inf, np.float32)
        for i, p in enumerate(points):
            entries = sorted(zip(p.vector["sparse"].indices, p.vector["sparse"].values)) if "sparse" in p.vector else []
            shared = [lexical[t] * w for t, w in entries if t in lexical]
            if shared:
                total = 0.0
                for x in shared:
                    total += x
                sparse[i] = np.float32(total)
        lists.append(sparse)
        sides.append(True)
    if len(lists) == 1:
        return ranked(lists[0], limit, ids, sides[0])
    tops = [ranked(s, candidates, ids, skip) for s, skip in zip(lists, sides)]
    fused: dict = {}
    for w, top in zip(weights, tops):
        for rank, (pid, score) in enumerate(top, start=1):
            term = 1.0 / (rrf_k + rank / w) if ranker == "rrf" else w * score
            fused[pid] = fused[pid] + term if pid in fused else term
    if ranker == "weighted":
        fused = {pid: float(np.float32(s)) for pid, s in fused.items()}
    return sorted(fused.items(), key=lambda item: item[1], reverse=True)[:limit]


def assert_same_as_qdrant(col, queries=QUERIES, fusions=FUSIONS, limit=25, candidates=40):
    """m3rt's candidates (the default in local mode) equal Qdrant's own query's, hit for hit, to the bit."""
    for ranker, weights in fusions:
        options = dict(limit=limit, candidates=candidates, ranker=ranker, weights=weights, rerank=False)
        ours = col.search(queries, **options)
        assert ours == col.search(queries, candidates_in="qdrant", **options)
        assert ours == col.search(queries, candidates_in="client", **options)


def assert_brute_force(col, runtime, queries=QUERIES, fusions=FUSIONS, limit=25, candidates=40):
    for ranker, weights in fusions:
        for query in queries:
            hits = col.search(query, limit=limit, candidates=candidates, ranker=ranker, weights=weights, rerank=False)
            assert [(h.id, h.hybrid_score) for h in hits] == brute_force(col, runtime, query, ranker, weights,
                                                                         candidates, limit)
            assert all(h.score == h.hybrid_score for h in hits)


@pytest.fixture(scope="module")
def col(runtime):
    with HybridCollection.create(":memory:", "local", runtime, colbert_dtype="float32") as c:
        c.insert(corpus(300, 0), chunk_size=64)
        yield c


@pytest.mark.parametrize("ranker, weights", FUSIONS)
def test_candidates_equal_brute_force_over_the_stored_outputs(col, runtime, ranker, weights):
    assert_brute_force(col, runtime, fusions=[(ranker, weights)])
    assert_brute_force(col, runtime, fusions=[(ranker, weights)], limit=5, candidates=5)


def test_candidates_equal_qdrants_own_query(col):
    assert_same_as_qdrant(col)
    assert_same_as_qdrant(col, fusions=[("rrf", (0.7, 1.3)), ("rrf", (1.0, 0.0)), ("weighted", (0.25, 2.0))],
                          limit=300, candidates=300)
    hits = col.search("river stone", limit=10, rerank=False)
    assert [h.text for h in hits[:3]] == ["river stone"] * 3  # the three equal texts, tied, in Qdrant's order


def test_reranked_search_equals_qdrants_candidates_reranked(col):
    for ranker, weights in FUSIONS:
        options = dict(limit=10, candidates=60, ranker=ranker, weights=weights)
        ours = col.search(QUERIES, **options)
        assert ours == col.search(QUERIES, candidates_in="qdrant", **options)
        inside = col.search(QUERIES, rerank_in="qdrant", **options)  # Qdrant's whole query: the server's path
        for a, b in zip(ours, inside):  # Qdrant orders equal MaxSim scores its own way
            assert_same_up_to_ties([(h.id, h.colbert_score) for h in a], [(h.id, h.colbert_score) for h in b])
            assert all(h.colbert_score is not None and h.text is not None for h in a)


def assert_same_up_to_ties(a: list[tuple], b: list[tuple], tol: float = 1e-6):
    """The same scores in the same places, and the same ids among each run of equal scores (a run the limit cuts
    may end in different ids)."""
    assert len(a) == len(b)
    np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-5)
    start = 0
    for i in range(1, len(a) + 1):
        if i == len(a) or abs(a[i][1] - a[i - 1][1]) > tol:
            if i < len(a):
                assert {p for p, _ in a[start:i]} == {p for p, _ in b[start:i]}
            start = i


def test_the_copies_follow_inserts_reruns_and_other_writers(runtime):
    texts, other = corpus(120, 1), corpus(80, 2)
    with HybridCollection.create(":memory:", "follow", runtime) as col:
        col.insert(texts[:60])
        assert_brute_force(col, runtime)  # builds the copies
        col.insert(texts[60:], first_id=60)  # more points
        assert_brute_force(col, runtime)
        assert col.insert(texts) == len(texts)  # a rerun from the start (resume): the same points rewritten
        assert_brute_force(col, runtime)
        col.insert(other[:50], first_id=10)  # points rewritten with other texts
        assert_brute_force(col, runtime)
        assert_same_as_qdrant(col)
        with HybridCollection(col.client, "follow", runtime) as writer:  # another writer on the same client
            writer.insert(other, first_id=100)
            assert_same_as_qdrant(writer)
        assert_brute_force(col, runtime)
        assert_same_as_qdrant(col)
        from qdrant_client import models

        col.client.delete(col.name, points_selector=models.PointIdsList(points=[0, 5, 101, 126]))
        col.client.update_vectors(col.name, [models.PointVectors(id=7, vector={
            "sparse": models.SparseVector(indices=[1, 2, 3], values=[5.0, 4.0, 3.0])})])
        col.client.delete_vectors(col.name, ["dense"], points=[8])
        assert_same_as_qdrant(col)
        gone = {h.id for hits in col.search(QUERIES, limit=200, candidates=200, rerank=False) for h in hits}
        assert not gone & {0, 5, 101, 126}
        made_again = HybridCollection.create(col.client, "follow", runtime, overwrite=True)  # dropped, made again
        made_again.insert(other[:30])
        assert_same_as_qdrant(col)
        assert_brute_force(col, runtime)


def test_a_reopened_directory_collection(tmp_path, runtime):
    path = tmp_path / "qdrant"
    texts = corpus(90, 3)
    with HybridCollection.create(str(path), "docs", runtime) as col:
        col.insert(texts[:60], chunk_size=25)
        before = col.search(QUERIES, limit=10)
    with HybridCollection(path, "docs", runtime) as col:  # a new client: local mode loads the points from disk
        assert col.search(QUERIES, limit=10) == before
        assert_brute_force(col, runtime)
        assert_same_as_qdrant(col)
        col.insert(texts[50:], first_id=50)  # overwrites 50-59, appends the rest
        assert_brute_force(col, runtime)
        assert_same_as_qdrant(col)


@pytest.mark.parametrize("outputs", [("dense", "sparse"), ("dense",), ("sparse",), ("sparse", "colbert"),
                                     ("dense", "colbert")])
def test_any_subset_of_outputs(runtime, outputs):
    with HybridCollection.create(":memory:", "subset", runtime, outputs=outputs) as col:
        col.insert(corpus(150, 4))
        assert_brute_force(col, runtime)
        assert_same_as_qdrant(col)
        if "colbert" in outputs:
            assert col.search(QUERIES, limit=10) == col.search(QUERIES, limit=10, candidates_in="qdrant")


def test_passages_without_lexical_weight(runtime):
    with HybridCollection.create(":memory:", "empty", runtime, outputs=["sparse"]) as col:
        col.insert(["", "...", "river stone", "   ", "stone"])
        with_sparse = {p.id for p in col.client.retrieve(col.name, list(range(5)), with_vectors=True)
                       if "sparse" in p.vector}
        assert 2 in with_sparse and not with_sparse & {0, 3}
        hits = {h.id for h in col.search(["river stone", "stone ...", "river"], limit=5)[0]}
        assert 2 in hits and hits <= with_sparse  # no sparse vector: never a hit
        assert col.search("", limit=5) == [] == col.search("   ", limit=5, candidates_in="qdrant")
        assert_brute_force(col, runtime)
        assert_same_as_qdrant(col)
    with HybridCollection.create(":memory:", "nothing", runtime, outputs=["sparse"]) as col:
        col.insert(["", "   "])
        assert col.search("river", limit=3) == [] == col.search("river", limit=3, candidates_in="qdrant")


def test_a_local_mode_that_holds_points_otherwise_is_a_clear_error(runtime):
    from importlib.metadata import version

    with HybridCollection.create(":memory:", "odd", runtime) as col:
        col.insert(corpus(20, 5))
        local = col.client._client.collections["odd"]
        local.ids_inv = tuple(local.ids_inv)  # what another qdrant-client might hold: local mode still works
        with pytest.raises(RuntimeError, match=rf"qdrant-client {version('qdrant-client')}: .*candidates_in='qdrant'"):
            col.search("river")
        assert col.search("river", rerank_in="qdrant", limit=3)
        assert col.search("river", candidates_in="qdrant", rerank=False, limit=3)


def test_candidates_in_is_checked(col):
    with pytest.raises(ValueError, match="candidates_in must be one of"):
        col.search("a", candidates_in="gpu")
    with pytest.raises(ValueError, match="candidates_in='client' with rerank_in='qdrant'"):
        col.search("a", candidates_in="client", rerank_in="qdrant")
    assert col.search("a", candidates_in="client", rerank_in="qdrant", rerank=False)  # no rerank: no conflict


def test_sparse_index_scores_as_a_python_loop():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        ids = np.sort(rng.choice(50, rng.integers(0, 8), replace=False))
        rows.append((ids, rng.random(len(ids)).astype(np.float32).astype(np.float64)))
    index = SparseIndex()
    for lo in range(0, 200, 70):  # appended in parts
        part = rows[lo:lo + 70]
        index.append(np.array([len(r[0]) for r in part]), np.concatenate([r[0] for r in part]).astype(np.int64),
                     np.concatenate([r[1] for r in part]))
    assert len(index) == 200
    for _ in range(20):
        q_ids = rng.choice(70, rng.integers(1, 10), replace=False)  # some past every stored token
        q_w = rng.random(len(q_ids)).astype(np.float32)
        want = np.full(200, -np.inf, np.float32)
        lexical = {int(t): float(w) for t, w in zip(q_ids, q_w)}
        for i, (ids, weights) in enumerate(rows):
            total, shared = 0.0, False
            for t, w in zip(ids.tolist(), weights.tolist()):
                if t in lexical:
                    total += lexical[t] * w
                    shared = True
            if shared:
                want[i] = np.float32(total)
        np.testing.assert_array_equal(index.scores(q_ids, q_w), want)
    assert len(SparseIndex().scores(np.array([3]), np.array([1.0], np.float32))) == 0
