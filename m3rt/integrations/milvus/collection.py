"""HybridCollection: BGE-M3 hybrid retrieval in Milvus (or Milvus Lite) on m3rt's outputs.

One collection: `id` (INT64, primary), `text` (VARCHAR), `dense` (FLOAT_VECTOR [H], inner product: the vectors
are unit length, so it is their cosine) and `sparse` (SPARSE_FLOAT_VECTOR over token ids, inner product: BGE-M3's
lexical matching score). Inserting streams the corpus through M3Runtime.iter_encode (a bounded window of texts)
and upserts chunk by chunk, so a rerun after a crash overwrites rather than duplicates. Searching runs Milvus's
hybrid search (the dense and the sparse candidates fused by RRF or a weighted sum), then reranks the candidates
by ColBERT MaxSim (m3rt.kernels) against the query.

ColBERT vectors are RECOMPUTED for the candidates at query time, not stored. Stored, they would be one
vector per token: a 200-token passage holds 200 x 1024 floats (400 KB in fp16) against one 4 KB dense vector,
so 10k passages take 4 GB and 100M take 40 TB, beside an index of a few GB. Milvus Lite also has no field for
a variable number of vectors per row. Recomputing costs one encode of the top candidates per query: milliseconds
on a GPU, the larger share of a query's time on a CPU (bench/milvus_hybrid.py measures it).

Milvus refuses a sparse vector with no non-zero weight. BGE-M3 gives one to a text whose every token weighs 0
(an empty text, only punctuation). Such a row is stored with one weight of float32's smallest normal value on the
CLS token id. m3rt never puts CLS in a query's sparse vector (special tokens are skipped), so that weight adds
exactly 0 to every sparse score. A query with no sparse weight is searched by its dense vector alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from m3rt.integrations.rows import PairedRows
from m3rt.integrations.search_args import search_args

import numpy as np

FIELDS = ("id", "text", "dense", "sparse")
MAX_VARCHAR = 65535  # Milvus's largest VARCHAR, in bytes
UPSERT_ROWS = 256  # rows per upsert call: one gRPC message stays far under Milvus's 64 MB limit
EMPTY_SPARSE_WEIGHT = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class Hit:
    id: int
    text: str
    score: float  # what the hits are ordered by: colbert_score when reranked, else hybrid_score
    hybrid_score: float  # Milvus's fused score (RRF or weighted), or the dense one for a query with no sparse
    colbert_score: float | None = None


class HybridCollection:
    def __init__(self, client, name: str, runtime):
        """An existing collection made by HybridCollection.create. client: a pymilvus MilvusClient, or a URI
        (a Milvus Lite file such as "corpus.db", or a server address) for which one is opened."""
        self.client, self._owned = _client(client)
        self.name, self.runtime = name, runtime
        try:
            if not self.client.has_collection(name):
                raise ValueError(f"collection {name!r} does not exist: HybridCollection.create makes it")
            fields = {f["name"]: f for f in self.client.describe_collection(name)["fields"]}
            missing = [f for f in FIELDS if f not in fields]
            if missing:
                raise ValueError(f"collection {name!r} has no field(s) {missing}: not made by HybridCollection")
            dim = int(fields["dense"].get("params", {}).get("dim", -1))
            if dim != runtime.manifest.dims.hidden:
                raise ValueError(f"collection {name!r} holds {dim}-dimensional dense vectors; this artifact gives "
                                 f"{runtime.manifest.dims.hidden}")
            self.max_text_bytes = int(fields["text"].get("params", {}).get("max_length", MAX_VARCHAR))
            # A collection in a reopened database starts released: searching it needs it loaded.
            self.client.load_collection(name)
        except BaseException:
            self.close()
            raise
        skip = runtime.manifest.sparse_skip_ids
        self._placeholder_id = runtime.manifest.special_ids.get("cls", skip[0] if skip else 0)

    @classmethod
    def create(cls, client, name: str, runtime, *, overwrite: bool = False, max_text_bytes: int = MAX_VARCHAR,
               dense_index: dict | None = None) -> "HybridCollection":
        """Make the collection (an existing one of that name is an error unless overwrite=True drops it).
        dense_index: Milvus index settings for the dense field, e.g. {"index_type": "HNSW", "params": {...}};
        default FLAT (exact search)."""
        from pymilvus import DataType

        client, owned = _client(client)
        if client.has_collection(name):
            if not overwrite:
                raise ValueError(f"collection {name!r} exists already: pass overwrite=True to replace it")
            client.drop_collection(name)
        if not 1 <= max_text_bytes <= MAX_VARCHAR:
            raise ValueError(f"max_text_bytes must be in 1..{MAX_VARCHAR}, got {max_text_bytes}")
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=max_text_bytes)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=runtime.manifest.dims.hidden)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        index = client.prepare_index_params()
        dense = dict(dense_index or {"index_type": "FLAT"})
        index.add_index("dense", metric_type="IP", **dense)
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        client.create_collection(name, schema=schema, index_params=index)
        made = cls(client, name, runtime)
        made._owned = owned
        return made

    # ------------------------------------------------------------------ writing
    def insert(self, texts: Iterable[str], ids: Iterable[int] | None = None, *, first_id: int = 0,
               batch_size: int | None = None, max_length: int | None = None, chunk_size: int | None = None,
               progress: Callable[[int], None] | None = None) -> int:
        """Encode `texts` (any iterable: a generator over a corpus is read a window at a time) and upsert them
        with their dense and sparse vectors; returns how many were written. ids: one int per text (default
        first_id, first_id + 1, ...). Rows are written chunk by chunk: on an error, the chunks before it are
        in, nothing of the failing chunk is, and running the same insert again overwrites rather than
        duplicates. progress(texts written so far) after every chunk."""
        rows = PairedRows(texts, ids, first_id, milvus_id, self.max_text_bytes)
        written = 0
        try:
            for chunk in self.runtime.iter_encode(rows.read(), batch_size=batch_size, max_length=max_length,
                                                  return_dense=True, return_sparse=True, return_colbert_vecs=False,
                                                  chunk_size=chunk_size):
                batch = [self._row(row_id, text, chunk, k) for k, (row_id, text) in enumerate(rows.take(len(chunk)))]
                for lo in range(0, len(batch), UPSERT_ROWS):
                    self.client.upsert(self.name, batch[lo:lo + UPSERT_ROWS])
                written += len(batch)
                if progress is not None:
                    progress(written)
        finally:
            # Seals what was written, however the insert ended: sealed segments are persisted and indexed.
            # Unsealed segments are searched by brute force: many times slower (bench/results/design-notes.md).
            self.client.flush(self.name)
        return written

    def _row(self, row_id: int, text: str, chunk, k: int) -> dict:
        ids, weights = chunk.sparse.row(k)
        sparse = {int(i): float(w) for i, w in zip(ids, weights) if w > 0}
        return {"id": row_id, "text": text, "dense": chunk.dense[k],
                "sparse": sparse or {self._placeholder_id: EMPTY_SPARSE_WEIGHT}}

    # ------------------------------------------------------------------ reading
    def search(self, queries: str | Sequence[str], *, limit: int = 10, candidates: int | None = None,
               ranker: str = "rrf", rrf_k: int = 60, weights: tuple[float, float] = (1.0, 1.0),
               rerank: bool = True, max_length: int | None = None):
        """Hybrid search: for each query, `candidates` (default max(limit, 50)) dense and sparse neighbours,
        fused by `ranker` ("rrf": reciprocal rank fusion with k = rrf_k; "weighted": weights[0] x dense +
        weights[1] x sparse, each score normalised by Milvus), then, with rerank, the fused top `candidates`
        reranked by ColBERT MaxSim. Returns [Hit] best first for one query, a list of them for a list."""
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        # Any iterable of queries is taken here (a generator too), as before the check was shared.
        one, queries, limit, candidates = search_args(queries if isinstance(queries, str) else list(queries),
                                                      limit, candidates, 50)
        if ranker == "rrf":
            fuse = RRFRanker(int(rrf_k))
        elif ranker == "weighted":
            if len(weights) != 2:
                raise ValueError(f"weights needs two numbers (dense, sparse), got {weights!r}")
            fuse = WeightedRanker(float(weights[0]), float(weights[1]))
        else:
            raise ValueError(f"ranker must be 'rrf' or 'weighted', got {ranker!r}")
        enc = self.runtime.encode_queries(queries, max_length=max_length, return_dense=True, return_sparse=True,
                                          return_colbert_vecs=False)
        sparse = [{int(t): float(w) for t, w in lw.items() if w > 0} for lw in enc["lexical_weights"]]
        keep = candidates if rerank else limit
        found: list = [None] * len(queries)
        both = [i for i, s in enumerate(sparse) if s]
        if both:
            dense_req = AnnSearchRequest([enc["dense_vecs"][i] for i in both], "dense", {"metric_type": "IP"},
                                         limit=candidates)
            sparse_req = AnnSearchRequest([sparse[i] for i in both], "sparse", {"metric_type": "IP"},
                                          limit=candidates)
            res = self.client.hybrid_search(self.name, [dense_req, sparse_req], fuse, limit=keep,
                                            output_fields=["text"])
            for i, hits in zip(both, res):
                found[i] = hits
        alone = [i for i, s in enumerate(sparse) if not s]
        if alone:  # no sparse weight to search with: the dense neighbours alone
            res = self.client.search(self.name, data=[enc["dense_vecs"][i] for i in alone], anns_field="dense",
                                     limit=keep, search_params={"metric_type": "IP"}, output_fields=["text"])
            for i, hits in zip(alone, res):
                found[i] = hits
        results = []
        for query, hits in zip(queries, found):
            hits = [Hit(id=int(h["id"]), text=h["entity"]["text"], score=float(h["distance"]),
                        hybrid_score=float(h["distance"])) for h in hits]
            if rerank and hits:
                order = self.runtime.rerank(query, [h.text for h in hits], top_k=limit, max_query_length=max_length)
                hits = [Hit(id=hits[i].id, text=hits[i].text, score=s, hybrid_score=hits[i].hybrid_score,
                            colbert_score=s) for i, s in order]
            results.append(hits[:limit])
        return results[0] if one else results

    def __len__(self) -> int:
        return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def close(self) -> None:
        """Close the Milvus client if this object opened it (the runtime is the caller's)."""
        if self._owned:
            self.client.close()
            self._owned = False

    def __enter__(self) -> "HybridCollection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _client(client):
    if isinstance(client, str):
        from pymilvus import MilvusClient

        return MilvusClient(client), True
    return client, False


def milvus_id(value, where: str) -> int:
    """A Milvus INT64 primary key."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where} is {type(value).__name__}, expected int")
    if not -(1 << 63) <= int(value) < 1 << 63:
        raise ValueError(f"{where} is {int(value)}: Milvus's ids are signed 64-bit")
    return int(value)
