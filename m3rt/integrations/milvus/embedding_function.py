"""M3EmbeddingFunction: pymilvus's BGEM3EmbeddingFunction (pymilvus.model.hybrid), on an m3rt artifact.

Same constructor arguments, methods and output keys as pymilvus's, which wraps FlagEmbedding's PyTorch model:
  encode_documents(texts) / encode_queries(texts) / __call__(texts) ->
      {"dense": [float32 [H] per text], "sparse": scipy.sparse.csr_array [n, vocab], "colbert_vecs": [[n_i - 1, H]]}
  dim -> {"dense": H, "colbert_vecs": H, "sparse": vocab}
As in pymilvus's, queries and documents are encoded alike (no instruction, the same max_length). The sparse
values are float32 (what Milvus stores; pymilvus's own are float64 copies of FlagEmbedding's float32 weights).
pymilvus itself is not imported here: only scipy, for the sparse matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_MODEL = "BAAI/bge-m3"


class M3EmbeddingFunction:
    def __init__(self, model_name="BAAI/bge-m3", batch_size: int = 16, device: str | None = None,
                 normalize_embeddings: bool = True, use_fp16: bool = False, return_dense: bool = True,
                 return_sparse: bool = True, return_colbert_vecs: bool = False, **kwargs):
        """model_name: an m3rt artifact directory, an open M3Runtime, or a model directory / hub id that
        M3Runtime.from_pretrained exports once into m3rt's cache (the export extra). device, use_fp16,
        normalize_embeddings and **kwargs go to M3Runtime (BGEM3FlagModel's arguments and RuntimeConfig's
        fields); with an open runtime they must be left at their defaults."""
        from m3rt.runtime.config import as_int
        from m3rt.runtime.m3 import M3Runtime
        from m3rt.runtime.outputs import Outputs

        outputs = Outputs(bool(return_dense), bool(return_sparse), bool(return_colbert_vecs))
        options = dict(kwargs, devices=device, normalize_embeddings=normalize_embeddings, use_fp16=use_fp16)
        if isinstance(model_name, M3Runtime):
            given = {k: v for k, v in options.items()
                     if (k, v) not in (("devices", None), ("normalize_embeddings", True), ("use_fp16", False))}
            if given:
                raise ValueError(f"{sorted(given)}: options for opening an artifact, but model_name is an open "
                                 "M3Runtime; configure that runtime instead")
            self.runtime, self._owned = model_name, False
        elif isinstance(model_name, (str, Path)):
            if (Path(model_name) / "manifest.json").is_file():
                self.runtime = M3Runtime(model_name, **options)
            else:
                self.runtime = M3Runtime.from_pretrained(model_name, **options)
            self._owned = True
        else:
            raise TypeError(f"model_name must be an artifact path, a model path or an M3Runtime, got "
                            f"{type(model_name).__name__}")
        self.model_name = model_name if not isinstance(model_name, M3Runtime) else str(model_name.manifest.root)
        self.batch_size = as_int(batch_size, "batch_size", minimum=1)
        self.normalize_embeddings = normalize_embeddings
        self.device = device
        self.use_fp16 = use_fp16
        self._returns = outputs.flags()

    def __call__(self, texts: Sequence[str]) -> dict:
        return self._encode(texts, "texts")

    def encode_queries(self, queries: Sequence[str]) -> dict:
        return self._encode(queries, "queries")

    def encode_documents(self, documents: Sequence[str]) -> dict:
        return self._encode(documents, "documents")

    @property
    def dim(self) -> dict:
        dims = self.runtime.manifest.dims
        return {"dense": dims.hidden, "colbert_vecs": dims.colbert, "sparse": self.vocab_size}

    @property
    def vocab_size(self) -> int:
        # pymilvus's is len(tokenizer): the sparse matrix must hold every token id the tokenizer can give.
        return max(int(self.runtime.manifest.dims.vocab or 0), self.runtime.tokenizer.vocab_size)

    def close(self) -> None:
        """Close the runtime if this function opened it."""
        if self._owned:
            self.runtime.close()

    def _encode(self, texts: Sequence[str], what: str) -> dict:
        from m3rt.runtime.texts import check_texts

        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
            raise TypeError(f"{what} must be a list of str, got {type(texts).__name__}")
        if len(texts) == 0:
            raise ValueError(f"{what} is empty: nothing to encode")
        encoded = self.runtime.encode_native(check_texts(texts, what), batch_size=self.batch_size, **self._returns)
        out: dict = {}
        if encoded.dense is not None:
            out["dense"] = list(encoded.dense)
        if encoded.sparse is not None:
            out["sparse"] = sparse_matrix(encoded.sparse, self.vocab_size)
        if encoded.colbert is not None:
            out["colbert_vecs"] = [encoded.colbert.row(i) for i in range(len(encoded))]
        return out


def sparse_matrix(rows, vocab_size: int):
    """m3rt's CSR sparse rows (Encoded.sparse) as a scipy csr_array [n, vocab_size], column indices sorted."""
    from scipy.sparse import csr_array

    n = len(rows.indptr) - 1
    m = csr_array((rows.weights.astype(np.float32, copy=False), rows.token_ids.astype(np.int64, copy=False),
                   rows.indptr.astype(np.int64, copy=False)), shape=(n, vocab_size))
    m.sort_indices()
    return m
