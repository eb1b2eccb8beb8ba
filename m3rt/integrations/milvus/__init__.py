"""Milvus: m3rt's dense, sparse and ColBERT outputs in a Milvus (or Milvus Lite) collection (the `milvus` extra).

- M3EmbeddingFunction: a drop-in for pymilvus's BGEM3EmbeddingFunction, on an m3rt artifact.
- HybridCollection: create a dense + sparse collection, insert a corpus streamed through iter_encode, hybrid
  search (RRF or weighted) and ColBERT MaxSim reranking of the candidates.
"""

from m3rt.integrations.milvus.collection import Hit, HybridCollection
from m3rt.integrations.milvus.embedding_function import M3EmbeddingFunction, sparse_matrix

__all__ = ["Hit", "HybridCollection", "M3EmbeddingFunction", "sparse_matrix"]
