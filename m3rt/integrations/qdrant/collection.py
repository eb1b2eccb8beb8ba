"""HybridCollection: BGE-M3's three outputs stored in one Qdrant collection and searched there.

Where: a QdrantClient, a directory (Qdrant's local mode: embedded, no server; the default), ":memory:", or a
server URL ("http://host:6333"); the same code runs on all of them. What: the named vectors `dense`, `sparse`
and `colbert` (a MAX_SIM multivector), any of them, chosen at creation (layout.py), with the text as payload.

Inserting streams any iterable of texts through M3Runtime.iter_encode on a helper thread while this thread
upserts the chunk before (Qdrant's client is only ever called from the caller's thread), chunk by chunk, so a
rerun after a crash overwrites rather than duplicates. ColBERT vectors are stored as float16 by default and
can be pruned to the k strongest per passage (pruning.py).

Searching: the dense and the sparse candidates fused (RRF or a weighted sum, queries.py), then reranked by
ColBERT MaxSim against the STORED vectors: nothing is re-encoded but the query. Where it runs:
- against a server (rerank_in="qdrant"): inside Qdrant, one request (prefetch -> fusion -> MAX_SIM) per query,
  and Qdrant scores only the candidates;
- in local mode (qdrant-client's numpy/Python reimplementation), in m3rt (candidates_in="client",
  rerank_in="client"): local mode's sparse search is a Python loop over every point, and it runs a MAX_SIM
  rescoring as a scan of the whole collection filtered to the candidates. So m3rt computes the fused candidates
  from local mode's stored arrays (local_search.py: local mode's own answer, to the bit), reads their stored
  ColBERT vectors where local mode keeps them (stored_vectors.py) and scores them with m3rt.kernels.
  candidates_in="qdrant" (or rerank_in="qdrant") asks Qdrant's own query instead: the same hits.
Scores are m3rt's (FlagEmbedding's): colbert_score is MaxSim averaged over the query's vectors, Qdrant's
MAX_SIM (a sum) divided by their number; hybrid_score is the fused score (None when Qdrant reranked: it
returns only the final score).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from m3rt.integrations.rows import PairedRows
from m3rt.integrations.qdrant.layout import (
    COLBERT,
    DENSE,
    METADATA_KEY,
    SPARSE,
    TEXT,
    Layout,
    collection_config,
    layout_for,
    read_layout,
)
from m3rt.integrations.qdrant.points import StoredBytes, chunk_points, point_id
from m3rt.integrations.qdrant.pruning import Pruning, tokens_of
from m3rt.integrations.qdrant.queries import (
    EncodedQuery,
    Fusion,
    candidates_request,
    rerank_request,
)
from m3rt.integrations.search_args import search_args

UPSERT_POINTS = 256  # points per upsert call: a request far under a server's 32 MB default limit at 1024-d
RERANK_PLACES = CANDIDATE_PLACES = ("auto", "qdrant", "client")


@dataclass(frozen=True)
class Hit:
    id: int | str
    text: str | None
    score: float  # what the hits are ordered by: colbert_score when reranked, else hybrid_score
    hybrid_score: float | None  # the fused score (or the one list's own); None when reranked inside Qdrant
    colbert_score: float | None = None


class HybridCollection:
    def __init__(self, client, name: str, runtime):
        """An existing collection made by HybridCollection.create. client: a QdrantClient, or where to open one
        (a directory for local mode, ":memory:", or an http(s) URL)."""
        self.client, self._owned = open_client(client)
        self.name, self.runtime = name, runtime
        try:
            if not self.client.collection_exists(name):
                raise ValueError(f"collection {name!r} does not exist: HybridCollection.create makes it")
            info = self.client.get_collection(name)
            self.layout: Layout = read_layout(info, name, runtime)
            settings = (info.config.metadata or {}).get(METADATA_KEY) or {}
            pruning = settings.get("colbert_pruning")
            self.pruning = Pruning(pruning["keep"], pruning["by"]) if pruning else None
        except BaseException:
            self.close()
            raise
        self.stored = StoredBytes()  # what this object's inserts wrote
        self._stored_colbert = self._local_search = None

    @classmethod
    def create(cls, client, name: str, runtime, *, outputs: Sequence[str] = (DENSE, SPARSE, COLBERT),
               colbert_dtype: str = "float16", colbert_keep: int | float | None = None, prune_by: str = "sparse",
               overwrite: bool = False) -> HybridCollection:
        """Make the collection (an existing one of that name is an error unless overwrite=True replaces it).
        outputs: which of "dense", "sparse", "colbert" to store. colbert_dtype: "float16" (half the bytes; a
        local-mode collection holds float32 in memory whatever is declared, see points.py) or "float32".
        colbert_keep: prune ColBERT to k vectors per passage (an int) or a fraction of them (a float in (0, 1)),
        chosen by prune_by ("sparse" or "coverage", see pruning.py); None keeps them all."""
        from m3rt.runtime import Outputs

        if isinstance(outputs, str):
            outputs = (outputs,)
        layout = layout_for(runtime, Outputs.of(outputs), colbert_dtype)
        pruning = None if colbert_keep is None else Pruning(colbert_keep, prune_by)
        if pruning is not None and not layout.colbert:
            raise ValueError("colbert_keep prunes ColBERT vectors, but outputs does not store 'colbert'")
        client, owned = open_client(client)
        try:
            if client.collection_exists(name):
                if not overwrite:
                    raise ValueError(f"collection {name!r} exists already: pass overwrite=True to replace it")
                client.delete_collection(name)
            vectors, sparse = collection_config(layout)
            settings = {"colbert_pruning": pruning.as_metadata() if pruning else None}
            client.create_collection(name, vectors_config=vectors, sparse_vectors_config=sparse,
                                     metadata={METADATA_KEY: settings})
            made = cls(client, name, runtime)
        except BaseException:
            if owned:
                client.close()
            raise
        made._owned = owned
        return made

    # ------------------------------------------------------------------ writing
    def insert(self, texts: Iterable[str], ids: Iterable[int | str] | None = None, *, first_id: int = 0,
               batch_size: int | None = None, max_length: int | None = None, chunk_size: int | None = None,
               progress: Callable[[int], None] | None = None) -> int:
        """Encode `texts` (any iterable: a generator over a corpus is read a window at a time) and upsert them
        with the outputs this collection stores; returns how many were written. ids: one per text, an unsigned
        int or a UUID (default first_id, first_id + 1, ...). Points are written chunk by chunk: on an error, the
        chunks before it are in, nothing of the failing chunk is (a failure inside an upsert call can leave part
        of its chunk), and running the same insert again overwrites rather than duplicates. progress(texts
        written so far) after every chunk. self.stored adds up the bytes written per output."""
        pairs = PairedRows(texts, ids, first_id, point_id)

        layout, pruning = self.layout, self.pruning
        if max_length is not None:
            max_length = self.runtime.check_max_length(max_length)
        need_sparse = layout.sparse or (pruning is not None and pruning.by == "sparse")
        from m3rt.integrations.qdrant.stored_vectors import is_local

        as_lists = not is_local(self.client)
        chunks = self.runtime.iter_encode(pairs.read(), batch_size=batch_size, max_length=max_length,
                                          return_dense=bool(layout.dense), return_sparse=need_sparse,
                                          return_colbert_vecs=bool(layout.colbert), chunk_size=chunk_size)
        written = 0
        for chunk in _ahead(chunks):
            rows = pairs.take(len(chunk))
            chunk_ids, chunk_texts = [r[0] for r in rows], [r[1] for r in rows]
            tokens = tokens_of(self.runtime, chunk_texts, max_length) if pruning and pruning.by == "sparse" else None
            points = chunk_points(chunk, chunk_ids, chunk_texts, layout, pruning, tokens, self.stored, as_lists)
            for lo in range(0, len(points), UPSERT_POINTS):
                self.client.upsert(self.name, points[lo:lo + UPSERT_POINTS], wait=True)
            written += len(points)
            if progress is not None:
                progress(written)
        return written

    # ------------------------------------------------------------------ reading
    def search(self, queries: str | Sequence[str], *, limit: int = 10, candidates: int | None = None,
               ranker: str = "rrf", rrf_k: int = 60, weights: tuple[float, float] = (1.0, 1.0),
               rerank: bool | None = None, rerank_in: str = "auto", candidates_in: str = "auto",
               max_length: int | None = None):
        """Hybrid search: for each query, its `candidates` (default max(limit, 100)) nearest by dense and by
        sparse score, fused by `ranker` ("rrf": sum of 1 / (rrf_k + rank / weight); "weighted": weights[0] x
        dense + weights[1] x sparse, see queries.py), then, with rerank (default: when ColBERT is stored), the
        fused top `candidates` reranked by ColBERT MaxSim against their stored vectors. rerank_in: "qdrant"
        (inside Qdrant, candidates included), "client" (m3rt.kernels on the stored vectors), "auto" (client in
        local mode, else qdrant). candidates_in: where the fused candidates are found: "qdrant" (Qdrant's query),
        "client" (m3rt, from local mode's stored vectors: local mode only, the same hits), "auto" (client in
        local mode, else qdrant). Returns [Hit] best first for one query, a list of them for a list."""
        one, queries, limit, candidates = search_args(queries, limit, candidates, 100)
        fusion = Fusion(ranker, rrf_k, weights)
        layout = self.layout
        if rerank is None:
            rerank = bool(layout.colbert)
        elif rerank and not layout.colbert:
            raise ValueError(f"rerank needs stored ColBERT vectors; collection {self.name!r} stores "
                             f"{', '.join(layout.outputs)}")
        if rerank_in not in RERANK_PLACES:
            raise ValueError(f"rerank_in must be one of {RERANK_PLACES}, got {rerank_in!r}")
        if candidates_in not in CANDIDATE_PLACES:
            raise ValueError(f"candidates_in must be one of {CANDIDATE_PLACES}, got {candidates_in!r}")
        colbert_only = not (layout.dense or layout.sparse)
        rerank_where = "qdrant" if colbert_only else self._place(rerank_in)
        if rerank and rerank_where == "qdrant" and candidates_in == "client" and not colbert_only:
            raise ValueError("candidates_in='client' with rerank_in='qdrant': the rerank inside Qdrant takes "
                             "Qdrant's own candidates")
        candidates_where = self._place(candidates_in)
        if candidates_where == "client" and not self._is_local():
            raise ValueError(f"candidates_in='client' computes the candidates from local mode's stored vectors; "
                             f"collection {self.name!r} is on a server")
        encoded = self._encode_queries(queries, rerank or colbert_only, max_length)
        if colbert_only or (rerank and rerank_where == "qdrant"):
            results = self._rerank_in_qdrant(encoded, fusion, candidates, limit)
        elif rerank:
            results = self._rerank_here(encoded, fusion, candidates, limit, candidates_where)
        elif candidates_where == "qdrant":
            results = self._fused(encoded, fusion, candidates, limit, with_payload=[TEXT])
        else:
            results = self._with_texts(self._fused_here(encoded, fusion, candidates, limit))
        return results[0] if one else results

    def _is_local(self) -> bool:
        from m3rt.integrations.qdrant.stored_vectors import is_local

        return is_local(self.client)

    def _place(self, where: str) -> str:
        """rerank_in / candidates_in resolved: "auto" is "client" in local mode, else "qdrant"."""
        return ("client" if self._is_local() else "qdrant") if where == "auto" else where

    def _encode_queries(self, queries: list[str], colbert: bool, max_length) -> list[EncodedQuery]:
        layout = self.layout
        enc = self.runtime.encode_queries(queries, max_length=max_length, return_dense=bool(layout.dense),
                                          return_sparse=layout.sparse, return_colbert_vecs=colbert)
        out = []
        for i in range(len(queries)):
            sparse = None
            if layout.sparse:
                lw = enc["lexical_weights"][i]
                sparse = (np.fromiter((int(t) for t in lw), np.int64, len(lw)),
                          np.fromiter(lw.values(), np.float32, len(lw)))
            out.append(EncodedQuery(dense=enc["dense_vecs"][i] if layout.dense else None, sparse=sparse,
                                    colbert=enc["colbert_vecs"][i] if colbert else None))
        return out

    def _query(self, requests: list) -> list[list]:
        """Qdrant's answers to the requests (None: no request, no hits), one batch call."""
        sent = [r for r in requests if r is not None]
        answers = iter(self.client.query_batch_points(self.name, requests=sent) if sent else [])
        return [[] if r is None else next(answers).points for r in requests]

    def _candidates(self, encoded, fusion, candidates, limit, where: str) -> list[list[Hit]]:
        """The fused candidates (without their texts), from Qdrant's query or from m3rt's (local mode)."""
        if where == "qdrant":
            return self._fused(encoded, fusion, candidates, limit, with_payload=False)
        return self._fused_here(encoded, fusion, candidates, limit)

    def _fused(self, encoded, fusion, candidates, limit, with_payload) -> list[list[Hit]]:
        found = self._query([candidates_request(q, fusion, candidates, limit, with_payload) for q in encoded])
        return [[Hit(id=p.id, text=(p.payload or {}).get(TEXT) if with_payload else None, score=float(p.score),
                     hybrid_score=float(p.score)) for p in points] for points in found]

    def _fused_here(self, encoded, fusion, candidates, limit) -> list[list[Hit]]:
        from m3rt.integrations.qdrant.local_search import LocalSearch

        if self._local_search is None:
            self._local_search = LocalSearch(self.client, self.name, self.layout)
        return [[Hit(id=pid, text=None, score=s, hybrid_score=s) for pid, s in found]
                for found in self._local_search.fused(encoded, fusion, candidates, limit)]

    def _rerank_in_qdrant(self, encoded, fusion, candidates, limit) -> list[list[Hit]]:
        found = self._query([rerank_request(q, fusion, candidates, limit, [TEXT]) for q in encoded])
        results = []
        for q, points in zip(encoded, found):
            n = len(q.colbert)
            results.append([Hit(id=p.id, text=(p.payload or {}).get(TEXT), score=float(p.score) / n,
                                hybrid_score=None, colbert_score=float(p.score) / n) for p in points])
        return results

    def _rerank_here(self, encoded, fusion, candidates, limit, candidates_in: str) -> list[list[Hit]]:
        from m3rt.integrations.qdrant.stored_vectors import StoredColbert
        from m3rt.kernels import rerank as maxsim_rerank

        if self._stored_colbert is None:
            self._stored_colbert = StoredColbert(self.client, self.name)
        fused = self._candidates(encoded, fusion, candidates, candidates, candidates_in)
        ranked = []
        for q, hits in zip(encoded, fused):
            if not hits:
                ranked.append([])
                continue
            vectors, offsets = self._stored_colbert.read([h.id for h in hits])
            idx, scores = maxsim_rerank(q.colbert, vectors, offsets, limit)
            ranked.append([Hit(id=hits[i].id, text=None, score=float(s), hybrid_score=hits[i].hybrid_score,
                               colbert_score=float(s)) for i, s in zip(idx, scores)])
        return self._with_texts(ranked)

    def _with_texts(self, results: list[list[Hit]]) -> list[list[Hit]]:
        """The hits with their stored texts (one retrieve for all of them)."""
        wanted = list({h.id: None for hits in results for h in hits})
        texts = {p.id: (p.payload or {}).get(TEXT) for p in
                 (self.client.retrieve(self.name, wanted, with_payload=[TEXT]) if wanted else [])}
        return [[replace(h, text=texts.get(h.id)) for h in hits] for hits in results]

    def __len__(self) -> int:
        return int(self.client.count(self.name, exact=True).count)

    def close(self) -> None:
        """Close the Qdrant client if this object opened it (the runtime is the caller's)."""
        if self._owned:
            self.client.close()
            self._owned = False

    def __enter__(self) -> HybridCollection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_client(where):
    """(QdrantClient, whether it was opened here) for a client, a local-mode directory, ":memory:" or a URL."""
    from pathlib import Path

    if isinstance(where, (str, Path)):
        from qdrant_client import QdrantClient

        where = str(where)
        if where == ":memory:":
            return QdrantClient(location=":memory:"), True
        if where.startswith(("http://", "https://")):
            return QdrantClient(url=where), True
        return QdrantClient(path=where), True
    if not hasattr(where, "query_batch_points"):
        raise TypeError(f"client must be a QdrantClient, a directory, ':memory:' or a URL, got {type(where).__name__}")
    return where, False


def _ahead(chunks):
    """The chunks of an iter_encode generator, produced on a helper thread one chunk ahead of the consumer:
    encoding the next chunk overlaps the upserts of this one. Errors reach the consumer in order; a consumer
    that stops early stops the helper."""
    box: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        box.put((chunk, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            item = (done, None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            item = (done, e)
        finally:
            chunks.close()
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    helper = threading.Thread(target=produce, name="m3rt-qdrant-encode", daemon=True)
    helper.start()
    try:
        while True:
            chunk, error = box.get()
            if chunk is done:
                if error is not None:
                    raise error
                return
            yield chunk
    finally:
        stop.set()
        helper.join()
