"""Stored ColBERT vectors in Milvus: an Array of Structs field with a MAX_SIM index (Milvus 2.6.4 and later, a
Milvus SERVER). Milvus Lite cannot hold them: its schema translator drops struct-array fields at creation, so
indexing `tokens[vec]` fails with "unknown field", and its search takes no EmbeddingList
(`supports_stored_colbert` tells). With Lite, HybridCollection recomputes the candidates' ColBERT vectors at
query time instead (collection.py).

The documented API (pymilvus 2.6.4+ / 3.x), what this module writes to, untested here for want of a server:
- schema: HybridCollection's fields plus `tokens`: ARRAY of STRUCT {vec: FLOAT_VECTOR [Hc]}, at most
  `max_tokens` elements; an HNSW index on `tokens[vec]` with metric MAX_SIM_IP (the vectors are unit length);
- insert: each row's `tokens` is [{"vec": v} for v in its ColBERT vectors];
- rerank: the dense + sparse hybrid search gives the candidates, then one search of the query's vectors as an
  EmbeddingList on `tokens[vec]`, filtered to the candidates' ids: Milvus scores only those.
Milvus's MAX_SIM_IP score is reported as Milvus returns it (knowhere defines it as a sum over the query's vectors,
as Qdrant does, not FlagEmbedding's mean; check on your server before mixing it with m3rt's colbert_score).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from m3rt.integrations.milvus.collection import (
    MAX_VARCHAR,
    UPSERT_ROWS,
    Hit,
    HybridCollection,
)

TOKENS, VEC = "tokens", "vec"
MAX_TOKENS = 8192  # struct-array capacity: BGE-M3's max_length, one vector per token


def supports_stored_colbert(client) -> bool:
    """Whether this Milvus keeps a struct-array field (False for Milvus Lite): a probe collection is made, read
    back and dropped."""
    from pymilvus import DataType

    probe = "m3rt_struct_array_probe"
    if client.has_collection(probe):
        client.drop_collection(probe)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    struct = client.create_struct_field_schema()
    struct.add_field(VEC, DataType.FLOAT_VECTOR, dim=2)
    schema.add_field(TOKENS, DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=struct, max_capacity=4)
    try:
        client.create_collection(probe, schema=schema)
        described = client.describe_collection(probe)
        names = {f["name"] for f in described.get("struct_array_fields", []) or []}
        names |= {f["name"] for f in described.get("fields", [])}
        return TOKENS in names
    except Exception:  # noqa: BLE001 - a Milvus that refuses the schema has no struct arrays either
        return False
    finally:
        if client.has_collection(probe):
            client.drop_collection(probe)


class StoredColbertCollection(HybridCollection):
    """HybridCollection with the ColBERT vectors stored in Milvus (a server with struct arrays) and the rerank
    done there."""

    @classmethod
    def create(cls, client, name: str, runtime, *, overwrite: bool = False, max_text_bytes: int = MAX_VARCHAR,
               dense_index: dict | None = None, max_tokens: int = MAX_TOKENS) -> StoredColbertCollection:
        from pymilvus import DataType, MilvusClient

        owned = isinstance(client, str)
        client = MilvusClient(client) if owned else client
        try:
            if not supports_stored_colbert(client):
                raise ValueError("this Milvus keeps no struct-array field (Milvus Lite does not): stored ColBERT "
                                 "needs a Milvus server 2.6.4 or later; HybridCollection recomputes ColBERT instead")
            if client.has_collection(name):
                if not overwrite:
                    raise ValueError(f"collection {name!r} exists already: pass overwrite=True to replace it")
                client.drop_collection(name)
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("text", DataType.VARCHAR, max_length=max_text_bytes)
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=runtime.manifest.dims.hidden)
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            struct = client.create_struct_field_schema()
            struct.add_field(VEC, DataType.FLOAT_VECTOR, dim=runtime.output_dims["colbert"])
            schema.add_field(TOKENS, DataType.ARRAY, element_type=DataType.STRUCT, struct_schema=struct,
                             max_capacity=int(max_tokens))
            index = client.prepare_index_params()
            index.add_index("dense", metric_type="IP", **dict(dense_index or {"index_type": "FLAT"}))
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
            index.add_index(f"{TOKENS}[{VEC}]", index_type="HNSW", metric_type="MAX_SIM_IP",
                            params={"M": 16, "efConstruction": 200})
            client.create_collection(name, schema=schema, index_params=index)
            made = cls(client, name, runtime)
        except BaseException:
            if owned:
                client.close()
            raise
        made._owned = owned
        return made

    def insert(self, texts: Iterable[str], ids: Iterable[int] | None = None, *, first_id: int = 0,
               batch_size: int | None = None, max_length: int | None = None, chunk_size: int | None = None,
               progress=None) -> int:
        """As HybridCollection.insert, with each passage's ColBERT vectors in `tokens` (chunk by chunk upserts:
        a rerun overwrites)."""
        from m3rt.integrations.milvus.collection import milvus_id
        from m3rt.integrations.rows import PairedRows

        pairs = PairedRows(texts, ids, first_id, milvus_id, self.max_text_bytes)
        written = 0
        try:
            for chunk in self.runtime.iter_encode(pairs.read(), batch_size=batch_size, max_length=max_length,
                                                  return_dense=True, return_sparse=True, return_colbert_vecs=True,
                                                  chunk_size=chunk_size):
                rows = []
                for k, (row_id, text) in enumerate(pairs.take(len(chunk))):
                    row = self._row(row_id, text, chunk, k)
                    row[TOKENS] = [{VEC: v} for v in chunk.colbert.row(k)]
                    rows.append(row)
                for lo in range(0, len(rows), UPSERT_ROWS):
                    self.client.upsert(self.name, rows[lo:lo + UPSERT_ROWS])
                written += len(rows)
                if progress is not None:
                    progress(written)
        finally:
            self.client.flush(self.name)
        return written

    def search(self, queries: str | Sequence[str], *, limit: int = 10, candidates: int | None = None,
               rerank: bool = True, max_length: int | None = None, **fusion):
        """HybridCollection.search's fused candidates, reranked inside Milvus by MAX_SIM_IP on the stored vectors
        (one EmbeddingList search per query, filtered to its candidates)."""
        from pymilvus.client.embedding_list import EmbeddingList

        one = isinstance(queries, str)
        keep = (candidates or max(limit, 50)) if rerank else limit
        fused = super().search(queries, limit=keep, candidates=candidates, rerank=False, max_length=max_length,
                               **fusion)
        if not rerank:
            return fused
        fused = [fused] if one else fused
        qs = [queries] if one else list(queries)
        vecs = self.runtime.encode_queries(qs, max_length=max_length, return_dense=False, return_sparse=False,
                                           return_colbert_vecs=True)["colbert_vecs"]
        results = []
        for hits, q in zip(fused, vecs):
            if not hits:
                results.append([])
                continue
            by_id = {h.id: h for h in hits}
            found = self.client.search(self.name, data=[EmbeddingList(np.asarray(q, np.float32))],
                                       anns_field=f"{TOKENS}[{VEC}]", limit=limit,
                                       filter=f"id in {sorted(by_id)}", output_fields=["text"],
                                       search_params={"metric_type": "MAX_SIM_IP"})[0]
            results.append([Hit(id=int(h["id"]), text=h["entity"]["text"], score=float(h["distance"]),
                                hybrid_score=by_id[int(h["id"])].hybrid_score, colbert_score=float(h["distance"]))
                            for h in found])
        return results[0] if one else results
