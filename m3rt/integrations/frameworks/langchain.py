"""LangChain: BGE-M3's dense vectors as a langchain_core `Embeddings`, its lexical weights as langchain-qdrant's
`SparseEmbeddings` (QdrantVectorStore with retrieval_mode=RetrievalMode.HYBRID takes both).

    dense, sparse = langchain_embeddings("artifact-dir")  # or an M3Runtime, or "http://host:port" (m3rt serve)
    store = QdrantVectorStore.from_texts(texts, embedding=dense, sparse_embedding=sparse,
                                         retrieval_mode=RetrievalMode.HYBRID, distance=Distance.DOT, path=...)

The dense vectors are unit length (Distance.DOT equals COSINE); the sparse score is the plain dot product of the
weights (leave the store's sparse modifier unset: IDF would change it). Made by langchain_embeddings, the two
share one cache: langchain-qdrant embeds a batch densely and then sparsely, and the model runs once.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from langchain_qdrant.sparse_embeddings import SparseEmbeddings, SparseVector

from m3rt.integrations.frameworks.encoder import SharedEncodings, connect


def _shared(target, cache: SharedEncodings | None, options: dict) -> SharedEncodings:
    if cache is not None:
        if target is not None or options:
            raise ValueError("give either a target (and its options) or a cache, not both")
        return cache
    if target is None:
        raise ValueError("target is required: an M3Runtime, an artifact path or an m3rt serve URL")
    return SharedEncodings(connect(target, **options))


class M3Embeddings(Embeddings):
    """Dense BGE-M3 vectors. target: an M3Runtime, an artifact path or an `m3rt serve` URL; options go to
    frameworks.encoder.connect (batch_size, query_max_length, timeout, headers)."""

    def __init__(self, target=None, *, cache: SharedEncodings | None = None, **options):
        self.cache = _shared(target, cache, options)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.cache.get(texts, query=False).dense.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.cache.get([text], query=True).dense[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return (await self.cache.aget(texts, query=False)).dense.tolist()

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.cache.aget([text], query=True)).dense[0].tolist()


def _vector(row) -> SparseVector:
    return SparseVector(indices=row[0].tolist(), values=row[1].tolist())


class M3SparseEmbeddings(SparseEmbeddings):
    """BGE-M3 lexical weights as langchain-qdrant sparse vectors (token id -> weight)."""

    def __init__(self, target=None, *, cache: SharedEncodings | None = None, **options):
        self.cache = _shared(target, cache, options)

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        return [_vector(r) for r in self.cache.get(texts, query=False).sparse]

    def embed_query(self, text: str) -> SparseVector:
        return _vector(self.cache.get([text], query=True).sparse[0])

    async def aembed_documents(self, texts: list[str]) -> list[SparseVector]:
        return [_vector(r) for r in (await self.cache.aget(texts, query=False)).sparse]

    async def aembed_query(self, text: str) -> SparseVector:
        return _vector((await self.cache.aget([text], query=True)).sparse[0])


def langchain_embeddings(target, **options) -> tuple[M3Embeddings, M3SparseEmbeddings]:
    """The dense and the sparse embeddings over one encoder and one cache (one model pass per batch)."""
    cache = SharedEncodings(connect(target, **options))
    return M3Embeddings(cache=cache), M3SparseEmbeddings(cache=cache)
