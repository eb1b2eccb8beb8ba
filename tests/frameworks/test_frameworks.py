"""The LangChain, LlamaIndex and Haystack adapters with the real packages and real Qdrant local-mode stores, each
on the embedded runtime and on a remote `m3rt serve` (started here on loopback): the vectors equal the runtime's,
dense and sparse searches through the frameworks' own stores rank as brute force, hybrid search runs end to end
with one model pass per batch, and bad input is a clear error."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # Haystack would send usage data
httpx = pytest.importorskip("httpx", reason="the serve extra (httpx) is not installed")
pytest.importorskip("qdrant_client", reason="the qdrant extra (qdrant-client) is not installed")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed: no remote server")

from m3rt.integrations.frameworks.encoder import SharedEncodings, connect  # noqa: E402

WORDS = ("river stone cloud market engine garden letter window silver music forest harbor paper "
         "winter candle doctor bridge orange planet signal").split()
QUERIES = ["river stone market", "silver planet signal window", "doctor candle"]


def corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(3, 25))) for _ in range(n)]


TEXTS = corpus(120, 5)


@contextmanager
def server(artifact):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "m3rt.cli", "serve", str(artifact), "--port", str(port),
                             "--max-texts-per-request", "32"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.stdout.read()}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


@pytest.fixture(scope="module")
def remote(tiny_artifact):
    with server(tiny_artifact) as url:
        yield url


@pytest.fixture(params=["embedded", "remote"])
def target(request, tiny_artifact):
    """Where the adapters encode: the artifact in this process, or the server's URL."""
    return str(tiny_artifact) if request.param == "embedded" else request.getfixturevalue("remote")


@pytest.fixture(scope="module")
def enc(runtime):
    return runtime.encode_native(TEXTS, return_dense=True, return_sparse=True)


def dense_scores(runtime, enc, query: str) -> np.ndarray:
    q = runtime.encode_queries([query], return_dense=True)["dense_vecs"][0]
    return enc.dense.astype(np.float64) @ q.astype(np.float64)


def sparse_scores(runtime, enc, query: str) -> np.ndarray:
    q = {int(t): float(w) for t, w in runtime.encode_queries([query], return_dense=False, return_sparse=True)
         ["lexical_weights"][0].items()}
    out = np.zeros(len(enc))
    for i in range(len(enc)):
        ids, w = enc.sparse.row(i)
        out[i] = sum(q.get(int(t), 0.0) * float(x) for t, x in zip(ids, w))
    return out


def check_top(got: list[tuple[str, float]], brute: np.ndarray, k: int):
    """(text, score) hits against brute force: the same scores, texts whose brute score is theirs."""
    order = np.argsort(-brute, kind="stable")[:k]
    np.testing.assert_allclose([s for _, s in got], brute[order], rtol=1e-5, atol=1e-6)
    for text, score in got:
        assert any(abs(brute[i] - score) < 1e-5 for i in range(len(TEXTS)) if TEXTS[i] == text)


def test_remote_encodings_equal_the_embedded_ones(runtime, remote):
    here, there = connect(runtime), connect(remote)
    texts = TEXTS[:40] + ["", "北京是中国的首都。"]  # 42 texts: two requests of at most 32
    for query in (False, True):
        a, b = here.encode(texts, query=query), there.encode(texts, query=query)
        np.testing.assert_allclose(a.dense, b.dense, atol=1e-6)
        for (ia, wa), (ib, wb) in zip(a.sparse, b.sparse):
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_allclose(wa, wb, atol=1e-6)
        c = asyncio.run(there.aencode(texts, query=query))
        np.testing.assert_allclose(c.dense, b.dense, atol=1e-6)  # concurrent requests: other server batches
    want = runtime.encode_native(texts, return_dense=True, return_sparse=True)
    np.testing.assert_allclose(here.encode(texts, query=False).dense, want.dense, atol=0)
    there.close()


def test_the_shared_cache_runs_the_model_once_per_text(runtime):
    cache = SharedEncodings(connect(runtime), size=1000)
    a = cache.get(TEXTS[:10], query=False)
    b = cache.get(TEXTS[5:15], query=False)  # five of them known already
    assert cache.model_calls == 2
    np.testing.assert_array_equal(a.dense[5:], b.dense[:5])
    cache.get(TEXTS[:15], query=False)
    assert cache.model_calls == 2
    cache.get(TEXTS[:1], query=True)  # a query is encoded as a query: not the document's entry
    assert cache.model_calls == 3
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        cache.get(["a", 3], query=False)
    with pytest.raises(TypeError, match="must be an M3Runtime, an artifact path or an http"):
        connect(42)


# ---------------------------------------------------------------------------------------------- LangChain
def test_langchain_hybrid_store(target, runtime, enc):
    pytest.importorskip("langchain_qdrant", reason="the langchain extra (langchain-qdrant) is not installed")
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore, RetrievalMode
    from qdrant_client import models

    from m3rt.integrations.frameworks.langchain import (
        M3Embeddings,
        langchain_embeddings,
    )

    dense, sparse = langchain_embeddings(target)
    assert isinstance(dense, Embeddings)
    store = QdrantVectorStore.from_texts(TEXTS, embedding=dense, sparse_embedding=sparse, location=":memory:",
                                         retrieval_mode=RetrievalMode.HYBRID, distance=models.Distance.DOT,
                                         ids=list(range(len(TEXTS))), batch_size=64)
    # One probe of the width, then one model pass per batch of 64 for dense and sparse together.
    assert dense.cache.model_calls == 1 + 2
    np.testing.assert_allclose(dense.embed_documents(TEXTS[:3]), enc.dense[:3], atol=1e-6)
    for query in QUERIES:
        hits = store.similarity_search_with_score(query, k=5)
        assert len(hits) == 5 and all(d.page_content in TEXTS for d, _ in hits)
        for mode, brute in ((RetrievalMode.DENSE, dense_scores(runtime, enc, query)),
                            (RetrievalMode.SPARSE, sparse_scores(runtime, enc, query))):
            one = QdrantVectorStore(store.client, collection_name=store.collection_name, embedding=dense,
                                    sparse_embedding=sparse, retrieval_mode=mode, distance=models.Distance.DOT)
            got = one.similarity_search_with_score(query, k=8)
            check_top([(d.page_content, s) for d, s in got], brute, 8)
        got = asyncio.run(M3Embeddings(target).aembed_query(query))
        np.testing.assert_allclose(got, dense.embed_query(query), atol=1e-6)
    store.client.close()
    with pytest.raises(ValueError, match="either a target .* or a cache"):
        M3Embeddings(target, cache=dense.cache)


# ---------------------------------------------------------------------------------------------- LlamaIndex
def test_llama_index_hybrid_store(target, runtime, enc):
    pytest.importorskip("llama_index.vector_stores.qdrant",
                        reason="the llamaindex extra (llama-index-vector-stores-qdrant) is not installed")
    from llama_index.core import Settings, StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import (
        VectorStoreQuery,
        VectorStoreQueryMode,
    )
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    from m3rt.integrations.frameworks.llama_index import M3Embedding

    Settings.llm = None
    embed = M3Embedding(target)
    client = QdrantClient(":memory:")
    store = QdrantVectorStore("docs", client=client, enable_hybrid=True, sparse_doc_fn=embed.sparse_doc_fn,
                              sparse_query_fn=embed.sparse_query_fn, batch_size=50,
                              dense_config=models.VectorParams(size=64, distance=models.Distance.DOT),
                              sparse_config=models.SparseVectorParams())
    nodes = [TextNode(text=t, id_=f"00000000-0000-0000-0000-{i:012d}") for i, t in enumerate(TEXTS)]
    VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed)
    assert embed.cache.model_calls == 2  # dense in batches of 64; the store's sparse batches of 50 hit the cache
    for query in QUERIES:
        q = embed.get_query_embedding(query)
        got = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=8))
        check_top([(n.get_content(), s) for n, s in zip(got.nodes, got.similarities)],
                  dense_scores(runtime, enc, query), 8)
        got = store.query(VectorStoreQuery(query_str=query, query_embedding=q, similarity_top_k=5, sparse_top_k=8,
                                           mode=VectorStoreQueryMode.SPARSE))
        check_top([(n.get_content(), s) for n, s in zip(got.nodes, got.similarities)],
                  sparse_scores(runtime, enc, query), 8)
        hybrid = store.query(VectorStoreQuery(query_str=query, query_embedding=q, similarity_top_k=5,
                                              sparse_top_k=5, mode=VectorStoreQueryMode.HYBRID))
        assert 1 <= len(hybrid.nodes) <= 5 and all(n.get_content() in TEXTS for n in hybrid.nodes)
        np.testing.assert_allclose(asyncio.run(embed.aget_query_embedding(query)), q, atol=1e-6)
    client.close()


# ---------------------------------------------------------------------------------------------- Haystack
def test_haystack_hybrid_pipeline(target, runtime, enc):
    pytest.importorskip("haystack", reason="the haystack extra (haystack-ai) is not installed")
    pytest.importorskip("haystack_integrations.document_stores.qdrant",
                        reason="the haystack extra (qdrant-haystack) is not installed")
    from haystack import Document, Pipeline
    from haystack.dataclasses import SparseEmbedding
    from haystack_integrations.components.retrievers.qdrant import (
        QdrantEmbeddingRetriever,
        QdrantHybridRetriever,
        QdrantSparseEmbeddingRetriever,
    )
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    from m3rt.integrations.frameworks.haystack import (
        M3DocumentEmbedder,
        M3HybridDocumentEmbedder,
        M3SparseDocumentEmbedder,
        M3SparseTextEmbedder,
        M3TextEmbedder,
    )

    store = QdrantDocumentStore(location=":memory:", embedding_dim=64, similarity="dot_product",
                                use_sparse_embeddings=True, sparse_idf=False, recreate_index=True,
                                progress_bar=False)
    docs = [Document(content=t, meta={"n": i}) for i, t in enumerate(TEXTS)]
    embedded = M3HybridDocumentEmbedder(target=target).run(docs)["documents"]
    np.testing.assert_allclose([d.embedding for d in embedded[:5]], enc.dense[:5], atol=1e-6)
    assert isinstance(embedded[0].sparse_embedding, SparseEmbedding)
    one = M3DocumentEmbedder(target=target).run(docs[:3])["documents"]
    two = M3SparseDocumentEmbedder(target=target).run(docs[:3])["documents"]
    assert [d.embedding for d in one] == [d.embedding for d in embedded[:3]]
    assert [d.sparse_embedding for d in two] == [d.sparse_embedding for d in embedded[:3]]
    store.write_documents(embedded)
    query_pipe = Pipeline()
    query_pipe.add_component("dense", M3TextEmbedder(target=target))
    query_pipe.add_component("sparse", M3SparseTextEmbedder(target=target))
    query_pipe.add_component("retriever", QdrantHybridRetriever(document_store=store, top_k=5))
    query_pipe.connect("dense.embedding", "retriever.query_embedding")
    query_pipe.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    for query in QUERIES:
        found = query_pipe.run({"dense": {"text": query}, "sparse": {"text": query}})["retriever"]["documents"]
        assert len(found) == 5 and all(d.content in TEXTS for d in found)
        q_dense = M3TextEmbedder(target=target).run(query)["embedding"]
        q_sparse = M3SparseTextEmbedder(target=target).run(query)["sparse_embedding"]
        got = QdrantEmbeddingRetriever(document_store=store, top_k=8).run(query_embedding=q_dense)["documents"]
        check_top([(d.content, d.score) for d in got], dense_scores(runtime, enc, query), 8)
        got = QdrantSparseEmbeddingRetriever(document_store=store, top_k=8).run(
            query_sparse_embedding=q_sparse)["documents"]
        check_top([(d.content, d.score) for d in got], sparse_scores(runtime, enc, query), 8)
        out = asyncio.run(M3TextEmbedder(target=target).run_async(query))
        np.testing.assert_allclose(out["embedding"], q_dense, atol=1e-6)
    text = query_pipe.dumps()
    # Haystack 3 loads only allowlisted modules' components (the store and retriever: ask for them too).
    again = Pipeline.loads(text, allowed_modules=["m3rt.integrations.frameworks.haystack", "haystack_integrations"])
    assert again.get_component("dense").target == target
    with pytest.raises(TypeError, match="list of haystack Document"):
        M3DocumentEmbedder(target=target).run(["not a document"])
    with pytest.raises(TypeError, match="text must be a str"):
        M3TextEmbedder(target=target).run(["a", "b"])
    with pytest.raises(TypeError, match="target must be an artifact path or an m3rt serve URL"):
        M3TextEmbedder(target=runtime)


def test_a_remote_error_names_the_server(remote):
    enc = connect(remote, query_max_length=1)  # below the 2 tokens <s> and </s> take
    with pytest.raises(RuntimeError, match=r"m3rt serve at .*/encode: HTTP 422"):
        enc.encode(["a"], query=True)
    assert enc.encode(["a"], query=False).dense.shape == (1, 64)


def test_example_script_runs(remote):
    """examples/qdrant_frameworks.py through the remote server: each framework finds Tokyo first."""
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "examples" / "qdrant_frameworks.py"), remote],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HAYSTACK_TELEMETRY_ENABLED": "False"})
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("LangChain", "LlamaIndex", "Haystack"):
        line = next(x for x in done.stdout.splitlines() if x.startswith(name + ":"))
        assert "Tokyo" in line, done.stdout
