"""A collection's stored vectors read without a query: in local mode where qdrant-client keeps them (numpy arrays
and Python lists in this process), against a server through `retrieve`.

Local mode's objects are private to qdrant-client (`QdrantClient._client`, its `collections`, each one's `ids`,
`ids_inv`, `payload`, `deleted`, `deleted_per_vector`, `vectors`, `sparse_vectors`, `multivectors`). This module
is the only one that reads them: `local_view` hands them on as a LocalView of plain lists and arrays, checked
each time, and a qdrant-client whose local mode holds them otherwise gets an error naming its version and the
switches that avoid it. Reading in place matters: the client's `retrieve` turns every stored vector into
Python lists first, and its sparse search walks every point in Python.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from m3rt.integrations.qdrant.layout import COLBERT, DENSE, SPARSE

AVOID = "search with candidates_in='qdrant' and rerank_in='qdrant' (Qdrant's own query)"


def is_local(client) -> bool:
    """True for a QdrantClient in local mode (":memory:" or a path): the collection lives in this process."""
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


@dataclass(frozen=True)
class LocalView:
    """A local-mode collection's points as it holds them now. Slot i is one point, ids[i]; a deleted point and
    a point's removed vector keep their slot and rows, masked (live()). payload[i] and sparse[i] are replaced by
    new objects whenever point i is written (an upsert; update_vectors replaces the sparse one only), and the
    lists grow by appending: object identity tells which slots were rewritten."""

    owner: object  # the collection object: a new one after the collection is dropped and made again
    ids: list  # slot -> point id
    slots: dict  # point id -> slot
    payload: list  # slot -> payload dict
    dense: np.ndarray | None  # [n, H] (float32), the first n rows of local mode's over-allocated array
    sparse: list | None  # slot -> the stored sparse vector (indices ascending)
    colbert: list | None  # slot -> [n_i, Hc] array
    deleted: np.ndarray  # [n], 1 for a deleted point
    missing: dict  # vector name -> [n], 1 where the point has no such vector

    def __len__(self) -> int:
        return len(self.ids)

    def live(self, name: str) -> np.ndarray:
        """bool [n]: the points a query on vector `name` may return (local mode's mask without a filter)."""
        n = len(self.ids)  # the masks are 0/1 arrays, int once local mode has appended to them
        return (self.deleted[:n] == 0) & (self.missing[name][:n] == 0)


def local_view(client, name: str, outputs: tuple[str, ...]) -> LocalView:
    """The local-mode collection `name` of `client`, with the named vectors `outputs`; a RuntimeError naming the
    qdrant-client version when its local mode does not hold them as read here."""
    collections = getattr(getattr(client, "_client", None), "collections", None)
    coll = collections.get(name) if isinstance(collections, dict) else None
    if coll is None:
        _unexpected(name, "no local collection object")
    fields = {a: getattr(coll, a, None) for a in ("ids", "ids_inv", "payload", "deleted", "deleted_per_vector",
                                                  "vectors", "sparse_vectors", "multivectors")}
    kinds = {"ids": dict, "ids_inv": list, "payload": list, "deleted": np.ndarray, "deleted_per_vector": dict,
             "vectors": dict, "sparse_vectors": dict, "multivectors": dict}
    wrong = [a for a, kind in kinds.items() if not isinstance(fields[a], kind)]
    if wrong:
        _unexpected(name, f"attributes {wrong} missing or of another type")
    n = len(fields["ids_inv"])
    dense = fields["vectors"].get(DENSE) if DENSE in outputs else None
    sparse = fields["sparse_vectors"].get(SPARSE) if SPARSE in outputs else None
    colbert = fields["multivectors"].get(COLBERT) if COLBERT in outputs else None
    missing = fields["deleted_per_vector"]
    checks = [len(fields["payload"]) == n == len(fields["ids"]), len(fields["deleted"]) >= n]
    if DENSE in outputs:
        checks.append(isinstance(dense, np.ndarray) and dense.ndim == 2 and dense.shape[0] >= n)
    if SPARSE in outputs:
        checks.append(isinstance(sparse, list) and len(sparse) == n
                      and (n == 0 or all(hasattr(sparse[0], a) for a in ("indices", "values"))))
    if COLBERT in outputs:
        checks.append(isinstance(colbert, list) and len(colbert) == n)
    checks += [isinstance(missing.get(o), np.ndarray) and len(missing[o]) >= n for o in outputs]
    if not all(checks):
        _unexpected(name, f"the stored {', '.join(outputs)} vectors are not where m3rt reads them")
    return LocalView(owner=coll, ids=fields["ids_inv"], slots=fields["ids"], payload=fields["payload"],
                     dense=None if dense is None else dense[:n], sparse=sparse, colbert=colbert,
                     deleted=fields["deleted"], missing=missing)


def sparse_rows(view: LocalView, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored sparse vectors of slots start..stop-1 as (entries per slot int64, token ids int64, weights
    float64): the weights as local mode keeps them (Python floats), for its float64 arithmetic."""
    rows = view.sparse[start:stop]
    lengths = np.fromiter((len(r.indices) for r in rows), np.int64, len(rows))
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(r.indices for r in rows), np.int64, total)
    weights = np.fromiter(itertools.chain.from_iterable(r.values for r in rows), np.float64, total)
    return lengths, ids, weights


def _unexpected(name: str, what: str):
    from importlib.metadata import version

    raise RuntimeError(f"qdrant-client {version('qdrant-client')}: its local mode does not hold collection "
                       f"{name!r} as m3rt reads it ({what}); {AVOID}")


class StoredColbert:
    """The stored ColBERT vectors of a set of points, packed as m3rt.kernels takes them (vectors [sum n_i, Hc],
    offsets [n + 1]), for reranking candidates outside Qdrant: the same values Qdrant scores."""

    def __init__(self, client, name: str):
        self.client, self.name = client, name
        self.local = is_local(client)
        if self.local:
            local_view(client, name, (COLBERT,))  # fail here, before any search, if local mode differs

    def read(self, ids: list) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 [sum n_i, Hc], offsets int64 [len(ids) + 1]) of these points, in this order."""
        rows = self._read_local(ids) if self.local else self._read_remote(ids)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        return np.concatenate(rows).astype(np.float32, copy=False), offsets

    def _read_local(self, ids: list) -> list[np.ndarray]:
        view = local_view(self.client, self.name, (COLBERT,))
        gone = view.missing[COLBERT]
        rows = []
        for pid in ids:
            idx = view.slots.get(pid)
            if idx is None or gone[idx]:
                raise KeyError(f"point {pid!r} has no stored ColBERT vectors in collection {self.name!r}")
            rows.append(np.asarray(view.colbert[idx], dtype=np.float32))
        return rows

    def _read_remote(self, ids: list) -> list[np.ndarray]:
        found = {p.id: p for p in self.client.retrieve(self.name, ids, with_payload=False, with_vectors=[COLBERT])}
        rows = []
        for pid in ids:
            p = found.get(pid)
            if p is None or not p.vector or COLBERT not in p.vector:
                raise KeyError(f"point {pid!r} has no stored ColBERT vectors in collection {self.name!r}")
            rows.append(np.asarray(p.vector[COLBERT], dtype=np.float32))
        return rows
