"""Qdrant integration against real qdrant-client local-mode collections (the `qdrant` extra): dense, sparse and
fused (RRF, weighted RRF, weighted sum) rankings and scores against brute force on the same m3rt outputs, the
ColBERT rerank from stored vectors (inside Qdrant and in m3rt.kernels) against M3Runtime.rerank, float16
storage, streamed resumable inserts, reopening a persisted collection, the outputs stored, and bad input."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="the qdrant extra (qdrant-client) is not installed")

from m3rt import M3Runtime  # noqa: E402
from m3rt.integrations.qdrant import HybridCollection  # noqa: E402

WORDS = ("river stone cloud market engine garden letter window silver music forest harbor paper "
         "winter candle doctor bridge orange planet signal").split()
QUERIES = ["river stone market", "silver planet signal window", "doctor", "orange music forest"]


def corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(3, 25))) for _ in range(n)]


@pytest.fixture(scope="module")
def texts():
    return corpus(300, 0)


@pytest.fixture(scope="module")
def enc(runtime, texts):
    return runtime.encode_native(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)


@pytest.fixture(scope="module")
def exact(runtime, texts):
    """The corpus in a float32 collection (the stored ColBERT vectors equal the encoded ones)."""
    col = HybridCollection.create(":memory:", "exact", runtime, colbert_dtype="float32")
    assert col.insert(texts, chunk_size=64) == 300  # five chunks: the streamed path
    yield col
    col.close()


@pytest.fixture(scope="module")
def half(runtime, texts):
    """The corpus in the default collection: ColBERT stored as float16."""
    col = HybridCollection.create(":memory:", "half", runtime)
    col.insert(texts, chunk_size=100)
    yield col
    col.close()


def query_outputs(runtime, query: str):
    q = runtime.encode_queries([query], return_dense=True, return_sparse=True, return_colbert_vecs=True)
    return q["dense_vecs"][0].astype(np.float64), q["lexical_weights"][0], q["colbert_vecs"][0]


def sparse_scores(enc, lexical: dict) -> np.ndarray:
    """Plain dot of the query's lexical weights with every passage's; -inf where no token is shared."""
    q = {int(t): float(w) for t, w in lexical.items()}
    out = np.full(len(enc), -np.inf)
    for i in range(len(enc)):
        ids, w = enc.sparse.row(i)
        shared = [(q[int(t)], float(x)) for t, x in zip(ids, w) if int(t) in q]
        if shared:
            out[i] = sum(a * b for a, b in shared)
    return out


def top(scores: np.ndarray, k: int) -> list[int]:
    """Ids of the k best finite scores, best first."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])]
    return order[:k]


def check_hits(hits, brute: dict | np.ndarray, k: int):
    """The hits' scores equal brute force's, and they are its k best (ids compared across clear gaps only)."""
    brute = np.array([brute.get(i, -np.inf) for i in range(max(brute) + 1)]) if isinstance(brute, dict) else brute
    want = top(brute, k)
    assert len(hits) == len(want)
    for h in hits:
        np.testing.assert_allclose(h.score, brute[h.id], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([h.score for h in hits], brute[want], rtol=1e-5, atol=1e-7)
    for i in np.flatnonzero(np.abs(np.diff(brute[want])) > 1e-5):
        assert {h.id for h in hits[:i + 1]} == set(want[:i + 1])


def rrf(lists: list[list[int]], k: int, weights=(1.0, 1.0)) -> dict:
    fused: dict = {}
    for lst, w in zip(lists, weights):
        for rank, i in enumerate(lst, start=1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (k + rank / w)
    return fused


@pytest.mark.parametrize("query", QUERIES)
def test_dense_and_sparse_collections_rank_as_brute_force(runtime, texts, enc, query):
    dense_q, lexical, _ = query_outputs(runtime, query)
    with HybridCollection.create(":memory:", "dense", runtime, outputs=["dense"]) as dense, \
            HybridCollection.create(":memory:", "sparse", runtime, outputs=["sparse"]) as sparse:
        dense.insert(texts)
        sparse.insert(texts)
        assert dense.layout.outputs == ("dense",) and sparse.layout.outputs == ("sparse",)
        check_hits(dense.search(query, limit=20), enc.dense.astype(np.float64) @ dense_q, 20)
        hits = sparse.search(query, limit=20)
        check_hits(hits, sparse_scores(enc, lexical), 20)
        assert all(h.text == texts[h.id] and h.colbert_score is None for h in hits)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (2.0, 0.5)])
def test_rrf_fused_scores_equal_brute_force(exact, runtime, texts, enc, weights):
    for query in QUERIES:
        dense_q, lexical, _ = query_outputs(runtime, query)
        cand, k = 30, 60
        lists = [top(enc.dense.astype(np.float64) @ dense_q, cand), top(sparse_scores(enc, lexical), cand)]
        hits = exact.search(query, limit=10, candidates=cand, rrf_k=k, weights=weights, rerank=False)
        check_hits(hits, rrf(lists, k, weights), 10)
        assert all(h.hybrid_score == h.score and h.text == texts[h.id] for h in hits)


def test_weighted_sum_equals_brute_force(exact, runtime, enc):
    for query in QUERIES:
        dense_q, lexical, _ = query_outputs(runtime, query)
        dense, sparse = enc.dense.astype(np.float64) @ dense_q, sparse_scores(enc, lexical)
        cand = 40
        fused = {}
        for i in top(dense, cand):
            fused[i] = 0.7 * dense[i]
        for i in top(sparse, cand):
            fused[i] = fused.get(i, 0.0) + 0.3 * sparse[i]
        hits = exact.search(query, limit=15, candidates=cand, ranker="weighted", weights=(0.7, 0.3), rerank=False)
        check_hits(hits, fused, 15)


@pytest.mark.parametrize("rerank_in", ["client", "qdrant"])
def test_colbert_rerank_from_stored_vectors_equals_runtime_rerank(exact, runtime, rerank_in):
    for query in QUERIES:
        fused = exact.search(query, limit=50, candidates=50, rerank=False)
        want = runtime.rerank(query, [h.text for h in fused], top_k=10)
        got = exact.search(query, limit=10, candidates=50, rerank_in=rerank_in)
        assert [h.id for h in got] == [fused[i].id for i, _ in want]
        np.testing.assert_allclose([h.colbert_score for h in got], [s for _, s in want], rtol=1e-5)
        assert all(h.score == h.colbert_score for h in got)
        if rerank_in == "client":  # the fused score travels along; Qdrant returns only the final one
            assert [h.hybrid_score for h in got] == [fused[i].hybrid_score for i, _ in want]
        else:
            assert all(h.hybrid_score is None for h in got)


def test_float16_storage_scores_the_rounded_vectors(half, exact, runtime, enc):
    """Stored float16 ColBERT (local mode keeps the rounded values as float32): both rerank paths score exactly
    MaxSim on the rounded vectors, within float16's rounding of the float32 scores."""
    from m3rt.kernels import maxsim

    assert half.layout.colbert_dtype == "float16" and exact.layout.colbert_dtype == "float32"
    info = half.client.get_collection(half.name).config.params.vectors["colbert"]
    assert info.datatype.value == "float16" and info.multivector_config.comparator.value == "max_sim"
    rounded = enc.colbert.vectors.astype(np.float16).astype(np.float32)
    for query in QUERIES:
        _, _, colbert_q = query_outputs(runtime, query)
        want = maxsim(colbert_q, rounded, enc.colbert.offsets)
        full = maxsim(colbert_q, enc.colbert.vectors, enc.colbert.offsets)
        for where in ("client", "qdrant"):
            hits = half.search(query, limit=10, candidates=60, rerank_in=where)
            np.testing.assert_allclose([h.score for h in hits], want[[h.id for h in hits]], rtol=1e-5)
            np.testing.assert_allclose([h.score for h in hits], full[[h.id for h in hits]], atol=2e-3)
    per = half.stored.per_passage()
    n_vectors = len(enc.colbert.vectors) / len(enc)
    np.testing.assert_allclose(per["colbert"], n_vectors * 64 * 2)
    np.testing.assert_allclose(per["dense"], 64 * 4)
    assert exact.stored.per_passage()["colbert"] == 2 * per["colbert"]


def test_colbert_only_collection_searches_by_maxsim(runtime, texts, enc):
    from m3rt.kernels import maxsim

    with HybridCollection.create(":memory:", "colbert", runtime, outputs="colbert", colbert_dtype="float32") as col:
        col.insert(texts[:100])
        for query in QUERIES[:2]:
            _, _, colbert_q = query_outputs(runtime, query)
            scores = maxsim(colbert_q, enc.colbert.vectors[:enc.colbert.offsets[100]], enc.colbert.offsets[:101])
            check_hits(col.search(query, limit=10), scores.astype(np.float64), 10)


def test_insert_streams_upserts_and_resumes(runtime):
    texts = corpus(50, 1)
    col = HybridCollection.create(":memory:", "resume", runtime)

    def failing():
        for i, t in enumerate(texts):
            if i == 35:
                raise OSError("disk went away")
            yield t

    seen = []
    with pytest.raises(OSError, match="disk went away"):
        col.insert(failing(), chunk_size=10, progress=seen.append)
    assert seen == [10, 20, 30] and len(col) == 30  # whole chunks before the failure, none of its own chunk
    assert col.insert(texts, chunk_size=10) == 50
    assert len(col) == 50  # the rerun overwrote ids 0-29: no duplicates
    got = {p.id: p.payload["text"] for p in col.client.retrieve(col.name, [0, 29, 49])}
    assert got == {0: texts[0], 29: texts[29], 49: texts[49]}
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, t)) for t in ("x", "y")]
    assert col.insert(["x", "y"], ids=[1000, uuid.UUID(ids[1])]) == 2 and len(col) == 52
    assert col.insert(["x", "y"], ids=[ids[0], ids[1].upper()]) == 2 and len(col) == 53  # the UUID's spellings
    hit = col.search("x", limit=1, candidates=60)[0]
    assert hit.text == "x"
    col.close()


def test_a_persisted_collection_reopens_searches_and_resumes(tmp_path, runtime):
    path = tmp_path / "qdrant"
    texts = corpus(80, 2)
    with HybridCollection.create(str(path), "docs", runtime, colbert_keep=6) as col:
        assert col.insert(texts[:50], chunk_size=20) == 50
        before = [[(h.id, h.score) for h in col.search(q, limit=5)] for q in QUERIES]
    with HybridCollection(path, "docs", runtime) as col:  # a new client on the directory
        assert len(col) == 50
        assert col.pruning is not None and col.pruning.keep == 6  # the settings travel with the collection
        assert [[(h.id, h.score) for h in col.search(q, limit=5)] for q in QUERIES] == before
        assert col.insert(texts, chunk_size=20) == 80  # resumed from the start: overwrites, then appends
        assert len(col) == 80
        assert col.search(QUERIES[0], limit=3)[0].colbert_score is not None
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(path))
    try:
        rows = client.retrieve("docs", list(range(80)), with_vectors=["colbert"])
        assert len(rows) == 80 and all(1 <= len(r.vector["colbert"]) <= 6 for r in rows)
    finally:
        client.close()


def test_texts_with_no_lexical_weight_are_stored_without_a_sparse_vector(runtime):
    with HybridCollection.create(":memory:", "empty", runtime) as col:
        texts = ["", "river stone", "   ", "..."]
        assert col.insert(texts) == 4 and len(col) == 4
        points = {p.id: p for p in col.client.retrieve(col.name, [0, 1], with_vectors=True)}
        assert "sparse" not in points[0].vector and "sparse" in points[1].vector
        assert len(points[0].vector["colbert"]) >= 1  # </s> at least
        assert {h.id for h in col.search("river stone", limit=4)} == {0, 1, 2, 3}
        assert len(col.search("", limit=3)) == 3  # no lexical weight in the query: dense candidates alone


def test_outputs_and_bad_inputs_are_clear_errors(runtime, tmp_path):
    col = HybridCollection.create(":memory:", "bad", runtime)
    with pytest.raises(TypeError, match=r"texts\[1\] is int, expected str"):
        col.insert(["fine", 5])
    with pytest.raises(TypeError, match="iterable of str, got str"):
        col.insert("one string")
    # Lists of unequal length are refused before anything is written; streams as soon as they part.
    with pytest.raises(ValueError, match=r"1 ids for 2 texts"):
        col.insert(["a", "b"], ids=[1])
    with pytest.raises(ValueError, match=r"ids ran out at texts\[1\]"):
        col.insert(iter(["a", "b"]), ids=iter([1]))
    with pytest.raises(ValueError, match="more ids than texts"):
        col.insert(iter(["a"]), ids=iter([1, 2]))
    with pytest.raises(ValueError, match=r"ids\[2\] = 7 repeats an earlier id"):
        col.insert(["x", "y", "z"], ids=[7, 8, 7])
    assert len(col) == 0  # nothing written by any of these
    with pytest.raises(TypeError, match=r"ids\[0\] is float, expected an int or a UUID"):
        col.insert(["a"], ids=[1.5])
    with pytest.raises(TypeError, match=r"ids\[0\] is bool"):
        col.insert(["a"], ids=[True])
    with pytest.raises(ValueError, match=r"ids\[0\] is -1: .* unsigned"):
        col.insert(["a"], ids=[-1])
    with pytest.raises(ValueError, match=r"ids\[0\] is 'doc-7': a string id must be a UUID"):
        col.insert(["a"], ids=["doc-7"])
    with pytest.raises(ValueError, match="max_length=9999 is above"):
        col.insert(["a"], max_length=9999)
    with pytest.raises(ValueError, match="queries is empty"):
        col.search([])
    with pytest.raises(TypeError, match=r"queries\[0\] is NoneType"):
        col.search([None])
    with pytest.raises(ValueError, match="ranker must be 'rrf' or 'weighted'"):
        col.search("a", ranker="bm25")
    with pytest.raises(ValueError, match=r"candidates \(5\) must be at least limit \(10\)"):
        col.search("a", limit=10, candidates=5)
    with pytest.raises(ValueError, match="weights needs two numbers"):
        col.search("a", weights=(1.0,))
    with pytest.raises(ValueError, match="weights must be finite, >= 0 and not both 0"):
        col.search("a", weights=(0, 0))
    with pytest.raises(ValueError, match="rerank_in must be one of"):
        col.search("a", rerank_in="gpu")
    with pytest.raises(ValueError, match="exists already: pass overwrite=True"):
        HybridCollection.create(col.client, "bad", runtime)
    with pytest.raises(ValueError, match="does not exist"):
        HybridCollection(col.client, "nope", runtime)
    with pytest.raises(ValueError, match="unknown output"):
        HybridCollection.create(col.client, "x", runtime, outputs=["dense", "bm25"])
    with pytest.raises(ValueError, match="nothing to return"):
        HybridCollection.create(col.client, "x", runtime, outputs=[])
    with pytest.raises(ValueError, match="colbert_dtype must be one of"):
        HybridCollection.create(col.client, "x", runtime, colbert_dtype="int8")
    with pytest.raises(ValueError, match="outputs does not store 'colbert'"):
        HybridCollection.create(col.client, "x", runtime, outputs=["dense"], colbert_keep=8)
    with pytest.raises(ValueError, match="L2-normalised"):
        HybridCollection.create(col.client, "x", runtime, colbert_keep=8, prune_by="norm")
    with pytest.raises(ValueError, match="at least 1 vector"):
        HybridCollection.create(col.client, "x", runtime, colbert_keep=0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        HybridCollection.create(col.client, "x", runtime, colbert_keep=1.5)
    with pytest.raises(TypeError, match="must be a QdrantClient"):
        HybridCollection(42, "bad", runtime)
    assert not col.client.collection_exists("x")  # nothing made by a refused create
    dense_only = HybridCollection.create(col.client, "dense_only", runtime, outputs=["dense", "sparse"])
    dense_only.insert(corpus(10, 3))
    with pytest.raises(ValueError, match="rerank needs stored ColBERT vectors; .* stores dense, sparse"):
        dense_only.search("a", rerank=True)
    assert dense_only.search("river", limit=3)[0].colbert_score is None  # default: no rerank without ColBERT
    from qdrant_client import models

    col.client.create_collection("foreign", vectors_config={"emb": models.VectorParams(size=64, distance="Cosine")})
    with pytest.raises(ValueError, match="not made by HybridCollection"):
        HybridCollection(col.client, "foreign", runtime)
    col.client.create_collection("idf", vectors_config={}, sparse_vectors_config={
        "sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)})
    with pytest.raises(ValueError, match="modifier"):
        HybridCollection(col.client, "idf", runtime)
    col.close()


def test_collection_for_another_width_is_refused(runtime, minilm_artifacts):
    col = HybridCollection.create(":memory:", "width", runtime)
    with M3Runtime(minilm_artifacts["fp32"]) as other, pytest.raises(ValueError, match="384"):
        HybridCollection(col.client, "width", other)
    col.close()


def test_server_points_are_valid_requests(runtime, texts):
    """Against a server the same points go out as lists: they pass qdrant-client's own validation and
    serialise as a REST body (no server runs here; the query path is the one local mode runs)."""
    from qdrant_client import models

    from m3rt.integrations.qdrant.layout import layout_for
    from m3rt.integrations.qdrant.points import StoredBytes, chunk_points
    from m3rt.runtime import Outputs

    chunk = runtime.encode_native(texts[:3] + [""], return_dense=True, return_sparse=True, return_colbert_vecs=True)
    layout = layout_for(runtime, Outputs(True, True, True), "float16")
    points = chunk_points(chunk, [0, 1, 2, 3], texts[:3] + [""], layout, None, None, StoredBytes(), as_lists=True)
    body = models.PointsList(points=[models.PointStruct.model_validate(p.model_dump()) for p in points])
    again = models.PointsList.model_validate_json(body.model_dump_json())
    assert [p.id for p in again.points] == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.array(again.points[1].vector["colbert"], np.float32),
                                  chunk.colbert.row(1).astype(np.float16).astype(np.float32))
    assert "sparse" not in again.points[3].vector


def test_a_server_url_opens_a_remote_client(runtime):
    """A URL is a server: nothing listens on this port, so opening the collection fails on the connection (and
    not with a local-mode error)."""
    import socket

    from m3rt.integrations.qdrant import open_client
    from m3rt.integrations.qdrant.stored_vectors import is_local

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client, owned = open_client(f"http://127.0.0.1:{port}")
    assert owned and not is_local(client)
    client.close()
    with pytest.raises(Exception, match="(?i)connect|refused"):
        HybridCollection(f"http://127.0.0.1:{port}", "docs", runtime)


def test_example_script_runs(tmp_path):
    """examples/qdrant_hybrid_search.py as the README runs it (the checked-in tiny artifact, a local-mode directory)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "examples" / "qdrant_hybrid_search.py"), "--where",
                           str(tmp_path / "qdrant")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "indexed 10 texts" in done.stdout and done.stdout.count("colbert ") == 2 * 3 * 3
    assert "reopened: 10 points" in done.stdout and "still 10 points" in done.stdout
