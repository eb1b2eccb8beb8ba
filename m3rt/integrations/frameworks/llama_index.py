"""LlamaIndex: BGE-M3's dense vectors as a `BaseEmbedding`, and its lexical weights as the sparse functions
llama-index-vector-stores-qdrant's QdrantVectorStore takes for hybrid search.

    embed = M3Embedding("artifact-dir")   # or an M3Runtime, or "http://host:port" (m3rt serve)
    store = QdrantVectorStore(client=client, collection_name="docs", enable_hybrid=True,
                              sparse_doc_fn=embed.sparse_doc_fn, sparse_query_fn=embed.sparse_query_fn)

Pass BOTH sparse functions: with one missing the store falls back to its own sparse encoder (FastEmbed, or
transformers + torch). The dense and sparse calls share one cache (the store embeds sparse in its own batches).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from m3rt.integrations.frameworks.encoder import SharedEncodings, connect

BatchSparse = tuple[list[list[int]], list[list[float]]]


def _batch_sparse(rows) -> BatchSparse:
    return [r[0].tolist() for r in rows], [r[1].tolist() for r in rows]


class M3Embedding(BaseEmbedding):
    """Dense BGE-M3 vectors (a pydantic model: configuration as fields, the encoder private). target: an
    M3Runtime, an artifact path or an `m3rt serve` URL; options go to frameworks.encoder.connect."""

    model_name: str = "bge-m3 (m3rt)"
    embed_batch_size: int = 64  # texts per _get_text_embeddings call (BaseEmbedding's default is 10)
    _cache: SharedEncodings = PrivateAttr()

    def __init__(self, target: Any = None, *, cache: SharedEncodings | None = None,
                 connect_options: dict | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if (target is None) == (cache is None):
            raise ValueError("give a target (an M3Runtime, an artifact path or an m3rt serve URL) or a cache")
        self._cache = cache or SharedEncodings(connect(target, **(connect_options or {})))

    @classmethod
    def class_name(cls) -> str:
        return "M3Embedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._cache.get([query], query=True).dense[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._cache.aget([query], query=True)).dense[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._cache.get([text], query=False).dense[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._cache.get(texts, query=False).dense.tolist()

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._cache.aget([text], query=False)).dense[0].tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return (await self._cache.aget(texts, query=False)).dense.tolist()

    def sparse_doc_fn(self, texts: list[str]) -> BatchSparse:
        """QdrantVectorStore's sparse_doc_fn: (token ids per text, weights per text)."""
        return _batch_sparse(self._cache.get(texts, query=False).sparse)

    def sparse_query_fn(self, texts: list[str]) -> BatchSparse:
        """QdrantVectorStore's sparse_query_fn."""
        return _batch_sparse(self._cache.get(texts, query=True).sparse)

    @property
    def cache(self) -> SharedEncodings:
        return self._cache
