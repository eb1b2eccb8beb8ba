"""m3rt's dense and sparse embeddings in LangChain, LlamaIndex and Haystack, each with its own Qdrant store in
hybrid mode (local mode, in memory), on the embedded runtime or a remote `m3rt serve`.

    pip install -e '.[langchain,llamaindex,haystack]'
    python examples/qdrant_frameworks.py                          # the tiny TEST artifact, embedded
    m3rt serve bge-m3-int8 --port 8000 &
    python examples/qdrant_frameworks.py http://127.0.0.1:8000    # the same through the server
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    "Photosynthesis converts light energy into chemical energy stored in sugar.",
    "Tokyo is the capital city of Japan and its largest metropolis.",
    "Python is a programming language that emphasises code readability.",
]
QUERY = "capital of Japan"


def langchain(target: str) -> None:
    from langchain_qdrant import QdrantVectorStore, RetrievalMode
    from qdrant_client import models

    from m3rt.integrations.frameworks.langchain import langchain_embeddings

    dense, sparse = langchain_embeddings(target)  # one model pass for both
    store = QdrantVectorStore.from_texts(TEXTS, embedding=dense, sparse_embedding=sparse, location=":memory:",
                                         retrieval_mode=RetrievalMode.HYBRID, distance=models.Distance.DOT)
    print("LangChain:", [d.page_content[:40] for d in store.similarity_search(QUERY, k=2)])
    store.client.close()


def llama_index(target: str) -> None:
    from llama_index.core import Settings, StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from m3rt.integrations.frameworks.llama_index import M3Embedding

    Settings.llm = None
    embed = M3Embedding(target)
    client = QdrantClient(":memory:")
    store = QdrantVectorStore("docs", client=client, enable_hybrid=True,  # pass BOTH sparse functions
                              sparse_doc_fn=embed.sparse_doc_fn, sparse_query_fn=embed.sparse_query_fn)
    index = VectorStoreIndex([TextNode(text=t) for t in TEXTS], embed_model=embed,
                             storage_context=StorageContext.from_defaults(vector_store=store))
    hits = index.as_retriever(similarity_top_k=2, sparse_top_k=2, vector_store_query_mode="hybrid").retrieve(QUERY)
    print("LlamaIndex:", [h.node.get_content()[:40] for h in hits])
    client.close()


def haystack(target: str) -> None:
    from haystack import Document, Pipeline
    from haystack_integrations.components.retrievers.qdrant import QdrantHybridRetriever
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    from m3rt.integrations.frameworks.haystack import (
        M3HybridDocumentEmbedder,
        M3SparseTextEmbedder,
        M3TextEmbedder,
    )

    probe = M3TextEmbedder(target=target)
    store = QdrantDocumentStore(location=":memory:", embedding_dim=len(probe.run("x")["embedding"]),
                                similarity="dot_product", use_sparse_embeddings=True, sparse_idf=False,
                                recreate_index=True, progress_bar=False)
    store.write_documents(M3HybridDocumentEmbedder(target=target).run([Document(content=t) for t in TEXTS])["documents"])
    pipe = Pipeline()
    pipe.add_component("dense", M3TextEmbedder(target=target))
    pipe.add_component("sparse", M3SparseTextEmbedder(target=target))
    pipe.add_component("retriever", QdrantHybridRetriever(document_store=store, top_k=2))
    pipe.connect("dense.embedding", "retriever.query_embedding")
    pipe.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    found = pipe.run({"dense": {"text": QUERY}, "sparse": {"text": QUERY}})["retriever"]["documents"]
    print("Haystack:", [d.content[:40] for d in found])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", nargs="?", default=str(ROOT / "tests" / "data" / "tiny-artifact"),
                    help="an artifact directory (embedded) or an m3rt serve URL")
    args = ap.parse_args()
    langchain(args.target)
    llama_index(args.target)
    haystack(args.target)


if __name__ == "__main__":
    main()
