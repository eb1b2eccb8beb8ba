"""Framework adapters: BGE-M3's dense and sparse outputs where LangChain, LlamaIndex and Haystack take embeddings
(the `langchain`, `llamaindex` and `haystack` extras). Each is thin: one module per framework over one encoder
(encoder.py) that runs an embedded M3Runtime or calls a remote `m3rt serve`, and a per-text cache so that a
framework's separate dense and sparse calls on the same texts run the model once.

- m3rt.integrations.frameworks.langchain: M3Embeddings (langchain_core Embeddings), M3SparseEmbeddings
  (langchain-qdrant's SparseEmbeddings, for RetrievalMode.HYBRID), langchain_embeddings (the two sharing one cache);
- m3rt.integrations.frameworks.llama_index: M3Embedding (BaseEmbedding), with sparse_doc_fn / sparse_query_fn for
  llama-index-vector-stores-qdrant's QdrantVectorStore(enable_hybrid=True);
- m3rt.integrations.frameworks.haystack: M3TextEmbedder, M3DocumentEmbedder, M3SparseTextEmbedder,
  M3SparseDocumentEmbedder, M3HybridDocumentEmbedder (Haystack components; SparseEmbedding outputs).
Nothing here is imported by `import m3rt`; each module imports its framework.
"""
