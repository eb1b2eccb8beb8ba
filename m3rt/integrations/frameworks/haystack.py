"""Haystack (2.x and 3.x) components over BGE-M3's dense and sparse outputs.

    M3TextEmbedder            run(text)      -> {"embedding": list[float]}
    M3SparseTextEmbedder      run(text)      -> {"sparse_embedding": SparseEmbedding}
    M3DocumentEmbedder        run(documents) -> {"documents": [...]} with Document.embedding
    M3SparseDocumentEmbedder  run(documents) -> {"documents": [...]} with Document.sparse_embedding
    M3HybridDocumentEmbedder  run(documents) -> {"documents": [...]} with both, one model pass
Each has run_async. target: an artifact path or an `m3rt serve` URL (a string, so that the default component
serialisation works); the encoder opens in warm_up() (or on first use) and is shared by the components of one
target in a process. Documents are embedded as their meta_fields_to_embed values and content joined by
embedding_separator, as Haystack's own embedders do. With QdrantDocumentStore(use_sparse_embeddings=True,
similarity="dot_product") and QdrantHybridRetriever they give hybrid search.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from haystack import Document, component
from haystack.dataclasses import SparseEmbedding

from m3rt.integrations.frameworks.encoder import SharedEncodings, connect

_SHARED: dict[tuple, SharedEncodings] = {}
_LOCK = threading.Lock()


def shared_encodings(target: str, batch_size: int | None = None, query_max_length: int | None = None) -> SharedEncodings:
    """The one encoder (and cache) of a target in this process."""
    key = (str(target), batch_size, query_max_length)
    with _LOCK:
        if key not in _SHARED:
            _SHARED[key] = SharedEncodings(connect(str(target), batch_size=batch_size,
                                                   query_max_length=query_max_length))
        return _SHARED[key]


def _sparse(row) -> SparseEmbedding:
    return SparseEmbedding(indices=row[0].tolist(), values=row[1].tolist())


class _M3Component:
    def __init__(self, target: str, batch_size: int | None = None, query_max_length: int | None = None,
                 meta_fields_to_embed: list[str] | None = None, embedding_separator: str = "\n"):
        if not isinstance(target, str):
            raise TypeError(f"target must be an artifact path or an m3rt serve URL (a str), got {type(target).__name__}")
        self.target, self.batch_size, self.query_max_length = target, batch_size, query_max_length
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self._cache: SharedEncodings | None = None

    def warm_up(self) -> None:
        if self._cache is None:
            self._cache = shared_encodings(self.target, self.batch_size, self.query_max_length)

    @property
    def cache(self) -> SharedEncodings:
        self.warm_up()
        return self._cache

    def _texts(self, documents: list[Document]) -> list[str]:
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError("documents must be a list of haystack Document")
        meta = [[str(d.meta[k]) for k in self.meta_fields_to_embed if d.meta.get(k) is not None] for d in documents]
        return [self.embedding_separator.join(m + [d.content or ""]) for m, d in zip(meta, documents)]

    @staticmethod
    def _text(text) -> str:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}: a list of documents goes to a "
                            "document embedder")
        return text


@component
class M3TextEmbedder(_M3Component):
    """A query's dense vector."""

    @component.output_types(embedding=list[float])
    def run(self, text: str):
        return {"embedding": self.cache.get([self._text(text)], query=True).dense[0].tolist()}

    @component.output_types(embedding=list[float])
    async def run_async(self, text: str):
        return {"embedding": (await self.cache.aget([self._text(text)], query=True)).dense[0].tolist()}


@component
class M3SparseTextEmbedder(_M3Component):
    """A query's lexical weights."""

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str):
        return {"sparse_embedding": _sparse(self.cache.get([self._text(text)], query=True).sparse[0])}

    @component.output_types(sparse_embedding=SparseEmbedding)
    async def run_async(self, text: str):
        return {"sparse_embedding": _sparse((await self.cache.aget([self._text(text)], query=True)).sparse[0])}


@component
class M3DocumentEmbedder(_M3Component):
    """Documents with their dense vectors."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]):
        enc = self.cache.get(self._texts(documents), query=False)
        return {"documents": [replace(d, embedding=v.tolist()) for d, v in zip(documents, enc.dense)]}

    @component.output_types(documents=list[Document])
    async def run_async(self, documents: list[Document]):
        enc = await self.cache.aget(self._texts(documents), query=False)
        return {"documents": [replace(d, embedding=v.tolist()) for d, v in zip(documents, enc.dense)]}


@component
class M3SparseDocumentEmbedder(_M3Component):
    """Documents with their lexical weights."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]):
        enc = self.cache.get(self._texts(documents), query=False)
        return {"documents": [replace(d, sparse_embedding=_sparse(r)) for d, r in zip(documents, enc.sparse)]}

    @component.output_types(documents=list[Document])
    async def run_async(self, documents: list[Document]):
        enc = await self.cache.aget(self._texts(documents), query=False)
        return {"documents": [replace(d, sparse_embedding=_sparse(r)) for d, r in zip(documents, enc.sparse)]}


@component
class M3HybridDocumentEmbedder(_M3Component):
    """Documents with both, in one model pass."""

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]):
        enc = self.cache.get(self._texts(documents), query=False)
        return {"documents": [replace(d, embedding=v.tolist(), sparse_embedding=_sparse(r))
                              for d, v, r in zip(documents, enc.dense, enc.sparse)]}

    @component.output_types(documents=list[Document])
    async def run_async(self, documents: list[Document]):
        enc = await self.cache.aget(self._texts(documents), query=False)
        return {"documents": [replace(d, embedding=v.tolist(), sparse_embedding=_sparse(r))
                              for d, v, r in zip(documents, enc.dense, enc.sparse)]}
