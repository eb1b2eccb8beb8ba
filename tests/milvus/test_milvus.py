"""Milvus integration against a real Milvus Lite (the `milvus` extra), started by these tests in a temp dir:
the drop-in embedding function against pymilvus's own (FlagEmbedding inside), Milvus's dense, sparse and RRF
rankings against brute force on the same m3rt outputs, the hybrid + ColBERT pipeline on a multilingual corpus
with trained weights, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus, milvus-lite) is not installed")
pytest.importorskip("milvus_lite", reason="the milvus extra (pymilvus, milvus-lite) is not installed")
pytest.importorskip("scipy", reason="the milvus extra (scipy) is not installed")

from m3rt import M3Runtime  # noqa: E402
from m3rt.integrations.milvus import HybridCollection, M3EmbeddingFunction  # noqa: E402

WORDS = ("river stone cloud market engine garden letter window silver music forest harbor paper "
         "winter candle doctor bridge orange planet signal").split()


def corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(3, 25))) for _ in range(n)]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from pymilvus import MilvusClient

    c = MilvusClient(str(tmp_path_factory.mktemp("milvus") / "m3rt.db"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def indexed(client, runtime):
    """300 random-word texts in a collection, with the m3rt outputs they were indexed from."""
    texts = corpus(300, 0)
    col = HybridCollection.create(client, "brute", runtime, overwrite=True)
    assert col.insert(texts, chunk_size=64) == 300  # five chunks: the streamed path
    enc = runtime.encode_native(texts, return_dense=True, return_sparse=True)
    return col, texts, enc


def _sparse_scores(runtime, enc, query: str) -> np.ndarray:
    from m3rt.integrations.milvus import sparse_matrix

    q = runtime.encode_queries([query], return_dense=False, return_sparse=True)["lexical_weights"][0]
    vocab = M3EmbeddingFunction(runtime).vocab_size
    docs = sparse_matrix(enc.sparse, vocab)
    qv = np.zeros(vocab, np.float64)
    for t, w in q.items():
        qv[int(t)] = w
    return docs @ qv


def _check_ranking(hits, brute: np.ndarray, k: int):
    """Milvus's top k against brute force: the same scores, and the same ids wherever scores are not tied."""
    order = np.argsort(-brute, kind="stable")[:k]
    got_scores = np.array([h["distance"] for h in hits])
    np.testing.assert_allclose(got_scores, brute[order], rtol=1e-5, atol=1e-6)
    for h in hits:
        np.testing.assert_allclose(h["distance"], brute[h["id"]], rtol=1e-5, atol=1e-6)
    distinct = np.abs(np.diff(brute[order])) > 1e-4
    for i in np.flatnonzero(distinct):  # ids either side of a clear gap are in the same order
        assert {h["id"] for h in hits[:i + 1]} == set(order[:i + 1].tolist())


@pytest.mark.parametrize("query", ["river stone market", "silver planet signal window", "doctor"])
def test_dense_and_sparse_rankings_equal_brute_force(indexed, runtime, client, query):
    col, texts, enc = indexed
    q = runtime.encode_queries([query], return_dense=True, return_sparse=True)
    dense_hits = client.search(col.name, data=[q["dense_vecs"][0]], anns_field="dense", limit=20,
                               search_params={"metric_type": "IP"})[0]
    _check_ranking(dense_hits, enc.dense.astype(np.float64) @ q["dense_vecs"][0].astype(np.float64), 20)
    sparse = {int(t): float(w) for t, w in q["lexical_weights"][0].items()}
    sparse_hits = client.search(col.name, data=[sparse], anns_field="sparse", limit=20,
                                search_params={"metric_type": "IP"})[0]
    brute = _sparse_scores(runtime, enc, query)
    positive = [h for h in sparse_hits if h["distance"] > 0]
    _check_ranking(positive, brute, len(positive))
    assert len(positive) == min(20, int((brute > 0).sum()))


def test_rrf_hybrid_scores_equal_brute_force_fusion(indexed, runtime):
    col, texts, enc = indexed
    query, cand, k = "garden letter winter", 30, 60
    q = runtime.encode_queries([query], return_dense=True, return_sparse=True)
    dense = enc.dense.astype(np.float64) @ q["dense_vecs"][0].astype(np.float64)
    sparse = _sparse_scores(runtime, enc, query)
    fused = np.zeros(len(texts))
    for scores in (dense, sparse):
        top = [i for i in np.argsort(-scores, kind="stable")[:cand] if scores is dense or scores[i] > 0]
        for rank, i in enumerate(top, start=1):
            fused[i] += 1.0 / (k + rank)
    hits = col.search(query, limit=10, candidates=cand, rrf_k=k, rerank=False)
    assert len(hits) == 10
    for h in hits:
        assert h.text == texts[h.id] and h.colbert_score is None
        np.testing.assert_allclose(h.hybrid_score, fused[h.id], rtol=1e-5)
    np.testing.assert_allclose([h.hybrid_score for h in hits], np.sort(fused)[::-1][:10], rtol=1e-5)


def test_rerank_orders_candidates_by_colbert_maxsim(indexed, runtime):
    col, texts, _ = indexed
    hits = col.search(["orange music forest", "candle bridge"], limit=5, candidates=40)
    for query, got in zip(["orange music forest", "candle bridge"], hits):
        fused = col.search(query, limit=40, candidates=40, rerank=False)
        want = runtime.rerank(query, [h.text for h in fused], top_k=5)
        assert [h.id for h in got] == [fused[i].id for i, _ in want]
        np.testing.assert_allclose([h.score for h in got], [s for _, s in want], rtol=1e-6)
        assert all(h.colbert_score == h.score for h in got)


def test_weighted_ranker_and_dense_only_queries(indexed):
    col, texts, _ = indexed
    hits = col.search("river river river", limit=5, ranker="weighted", weights=(0.7, 0.3), rerank=False)
    assert len(hits) == 5 and all(h.text == texts[h.id] for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # An empty query has no sparse weight: searched by its dense vector alone.
    assert len(col.search("", limit=3, rerank=False)) == 3


def test_texts_with_no_sparse_weight_are_stored_and_score_zero(client, runtime):
    col = HybridCollection.create(client, "empty_sparse", runtime, overwrite=True)
    texts = ["", "river stone", "   "]
    assert runtime.encode_native([""], return_sparse=True).sparse.indptr[-1] == 0  # really no weight
    assert col.insert(texts) == 3 and len(col) == 3
    q = runtime.encode_queries(["river stone"], return_sparse=True)["lexical_weights"][0]
    hits = client.search(col.name, data=[{int(t): float(w) for t, w in q.items()}], anns_field="sparse",
                         limit=3, search_params={"metric_type": "IP"})[0]
    scores = {h["id"]: h["distance"] for h in hits}
    assert scores.get(0, 0.0) == 0.0 and scores[1] > 0


def test_insert_streams_upserts_and_resumes(client, runtime):
    col = HybridCollection.create(client, "resume", runtime, overwrite=True)
    texts = corpus(50, 1)

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
    assert len(col) == 50  # rerun overwrote ids 0-29, no duplicates
    rows = col.client.query(col.name, filter="id in [0, 29, 49]", output_fields=["text"])
    assert {r["id"]: r["text"] for r in rows} == {0: texts[0], 29: texts[29], 49: texts[49]}
    assert col.insert(["x", "y"], ids=[1000, 1001]) == 2 and len(col) == 52


def test_bad_inputs_are_clear_errors(client, runtime, tmp_path):
    col = HybridCollection.create(client, "bad", runtime, overwrite=True, max_text_bytes=64)
    with pytest.raises(TypeError, match=r"texts\[1\] is int, expected str"):
        col.insert(["fine", 5])
    with pytest.raises(TypeError, match="iterable of str, got str"):
        col.insert("one string")
    with pytest.raises(ValueError, match=r"texts\[0\] is 65 bytes in UTF-8; .* at most 64"):
        col.insert(["é" * 32 + "a"])
    # Lists of unequal length are refused before anything is written; streams as soon as they part.
    with pytest.raises(ValueError, match=r"1 ids for 2 texts"):
        col.insert(["a", "b"], ids=[1])
    with pytest.raises(ValueError, match=r"2 ids for 1 texts"):
        col.insert(["a"], ids=[1, 2])
    with pytest.raises(ValueError, match=r"ids ran out at texts\[1\]"):
        col.insert(iter(["a", "b"]), ids=iter([1]))
    with pytest.raises(ValueError, match="more ids than texts"):
        col.insert(iter(["a"]), ids=iter([1, 2]))
    before = col.client.query(col.name, filter="id >= 0", output_fields=["id"])
    with pytest.raises(ValueError, match=r"ids\[2\] = 7 repeats an earlier id"):
        col.insert(["x", "y", "z"], ids=[7, 8, 7])
    assert col.client.query(col.name, filter="id >= 0", output_fields=["id"]) == before  # nothing written
    with pytest.raises(TypeError, match=r"ids\[0\] is str, expected int"):
        col.insert(["a"], ids=["1"])
    with pytest.raises(ValueError, match="queries is empty"):
        col.search([])
    with pytest.raises(TypeError, match=r"queries\[0\] is NoneType"):
        col.search([None])
    with pytest.raises(ValueError, match="ranker must be 'rrf' or 'weighted'"):
        col.search("a", ranker="bm25")
    with pytest.raises(ValueError, match=r"candidates \(5\) must be at least limit \(10\)"):
        col.search("a", limit=10, candidates=5)
    with pytest.raises(ValueError, match="exists already: pass overwrite=True"):
        HybridCollection.create(client, "bad", runtime)
    with pytest.raises(ValueError, match="does not exist"):
        HybridCollection(client, "nope", runtime)
    ef = M3EmbeddingFunction(runtime)
    with pytest.raises(ValueError, match="documents is empty"):
        ef.encode_documents([])
    with pytest.raises(TypeError, match=r"queries\[1\] is int, expected str"):
        ef.encode_queries(["a", 3])
    with pytest.raises(TypeError, match="must be a list of str, got str"):
        ef(["a"][0])
    with pytest.raises(ValueError, match="options for opening an artifact"):
        M3EmbeddingFunction(runtime, device="cuda")


def test_collection_for_another_width_is_refused(client, runtime, minilm_artifacts):
    HybridCollection.create(client, "width", runtime, overwrite=True)
    with M3Runtime(minilm_artifacts["fp32"]) as other, pytest.raises(ValueError, match="384"):
        HybridCollection(client, "width", other)


def test_embedding_function_matches_pymilvus_bgem3(tiny_model_dir, tiny_artifact):
    """pymilvus's own BGEM3EmbeddingFunction (FlagEmbedding's PyTorch model) on the same weights."""
    hybrid = pytest.importorskip("pymilvus.model.hybrid", reason="pymilvus-model is not installed")
    theirs = hybrid.BGEM3EmbeddingFunction(str(tiny_model_dir), device="cpu", use_fp16=False,
                                           return_colbert_vecs=True)
    ours = M3EmbeddingFunction(str(tiny_artifact), device="cpu", return_colbert_vecs=True)
    texts = corpus(20, 3) + ["北京是中国的首都。", "", "a"]
    for method in ("encode_documents", "encode_queries"):
        a, b = getattr(ours, method)(texts), getattr(theirs, method)(texts)
        assert set(a) == set(b) == {"dense", "sparse", "colbert_vecs"}
        np.testing.assert_allclose(np.stack(a["dense"]), np.stack(b["dense"]), atol=1e-5)
        assert a["sparse"].shape == b["sparse"].shape
        np.testing.assert_allclose(a["sparse"].toarray(), b["sparse"].toarray(), atol=1e-5)
        for x, y in zip(a["colbert_vecs"], b["colbert_vecs"]):
            np.testing.assert_allclose(x, y, atol=1e-5)
    assert ours.dim == theirs.dim
    ours.close()


MULTILINGUAL = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    "Der Eiffelturm ist ein Turm aus Schmiedeeisen auf dem Marsfeld in Paris.",
    "Photosynthesis converts light energy into chemical energy stored in sugar.",
    "La fotosíntesis convierte la energía de la luz en energía química.",
    "光合作用是植物把光能转化为化学能的过程。",
    "The central bank raised interest rates and the stock market fell sharply.",
    "Der Aktienmarkt fiel nach der Zinsentscheidung der Zentralbank stark.",
    "Tokyo is the capital city of Japan and its largest metropolis.",
    "La cuisine française est célèbre pour ses fromages et ses vins.",
    "Python is a programming language that emphasises code readability.",
    "Les glaciers des Alpes fondent rapidement à cause du réchauffement climatique.",
    "The violin has four strings and is played with a bow.",
]
EXPECTED = {
    "Wie hoch ist der Eiffelturm aus Schmiedeeisen?": 1,
    "how do plants turn light into chemical energy": 2,
    "energía química de la luz": 3,
    "光合作用 化学能": 4,
    "Aktienmarkt Zinsentscheidung": 6,
    "what is the capital of Japan": 7,
    "fromages et vins français": 8,
    "a musical instrument with strings played with a bow": 11,
}


@pytest.mark.parametrize("ranker", ["rrf", "weighted"])
def test_hybrid_pipeline_finds_the_expected_documents(client, minilm_artifacts, ranker):
    """TRAINED weights (all-MiniLM-L6-v2 with M3 heads): each query's document comes first after hybrid search and
    ColBERT reranking, in its own language."""
    with M3Runtime(minilm_artifacts["fp32"]) as rt:
        col = HybridCollection.create(client, f"multilingual_{ranker}", rt, overwrite=True)
        col.insert(iter(MULTILINGUAL), chunk_size=5)
        queries = list(EXPECTED)
        results = col.search(queries, limit=3, candidates=8, ranker=ranker)
        got = {q: [h.id for h in hits] for q, hits in zip(queries, results)}
        assert {q: ids[0] for q, ids in got.items()} == EXPECTED, got
        assert all(h.text == MULTILINGUAL[h.id] for hits in results for h in hits)


def test_example_script_runs(tmp_path):
    """examples/hybrid_search.py as the README runs it (the checked-in tiny artifact, a temporary Milvus Lite)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "examples" / "hybrid_search.py"), "--db",
                           str(tmp_path / "example.db")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "indexed 10 texts" in done.stdout and done.stdout.count("colbert") == 2 * 3 * 3


def test_a_reopened_database_is_searchable(tmp_path, runtime):
    """Milvus Lite reopens collections released: HybridCollection loads it."""
    from pymilvus import MilvusClient

    db = str(tmp_path / "reopen.db")
    with HybridCollection.create(db, "docs", runtime) as col:
        col.insert(corpus(30, 4))
        before = [h.id for h in col.search("river stone", limit=5, rerank=False)]
    client = MilvusClient(db)
    try:
        col = HybridCollection(client, "docs", runtime)
        assert len(col) == 30
        assert [h.id for h in col.search("river stone", limit=5, rerank=False)] == before
    finally:
        client.close()
