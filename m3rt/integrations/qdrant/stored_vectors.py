"""The stored ColBERT vectors of a set of points, packed as m3rt.kernels takes them (vectors [sum n_i, Hc],
offsets [n + 1]), for reranking candidates outside Qdrant.

In local mode the collection lives in this process, in numpy arrays: they are read where they are (the same
values Qdrant scores), where the client's `retrieve` would turn every stored vector into Python lists first.
That reaches into qdrant-client's local-mode objects (`QdrantClient._client`, its collections' `ids` and
`multivectors`); their shape is checked when the reader is made, and a qdrant-client whose local mode differs
gets a clear error naming the version. Against a server the vectors come through `retrieve`.
"""

from __future__ import annotations

import numpy as np

from m3rt.integrations.qdrant.layout import COLBERT


def is_local(client) -> bool:
    """True for a QdrantClient in local mode (":memory:" or a path): the collection lives in this process."""
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


class StoredColbert:
    def __init__(self, client, name: str):
        self.client, self.name = client, name
        self._local = None
        if is_local(client):
            collections = getattr(client._client, "collections", None)  # noqa: SLF001 - see the docstring
            coll = collections.get(name) if isinstance(collections, dict) else None
            if coll is None or not all(hasattr(coll, a) for a in ("ids", "multivectors", "deleted_per_vector")) \
                    or COLBERT not in getattr(coll, "multivectors", {}):
                import qdrant_client

                raise RuntimeError(f"qdrant-client {getattr(qdrant_client, '__version__', '?')}: its local mode does "
                                   f"not hold collection {name!r} as m3rt expects (ids, multivectors); use "
                                   "rerank_in='qdrant'")
            self._local = coll

    def read(self, ids: list) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 [sum n_i, Hc], offsets int64 [len(ids) + 1]) of these points, in this order."""
        rows = self._read_local(ids) if self._local is not None else self._read_remote(ids)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        return np.concatenate(rows).astype(np.float32, copy=False), offsets

    def _read_local(self, ids: list) -> list[np.ndarray]:
        coll = self._local
        store, gone = coll.multivectors[COLBERT], coll.deleted_per_vector[COLBERT]
        rows = []
        for pid in ids:
            idx = coll.ids.get(pid)
            if idx is None or gone[idx]:
                raise KeyError(f"point {pid!r} has no stored ColBERT vectors in collection {self.name!r}")
            rows.append(np.asarray(store[idx], dtype=np.float32))
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
