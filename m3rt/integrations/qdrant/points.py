"""One chunk of m3rt's outputs (`Encoded`) as Qdrant points, and what each stored output costs in bytes.

Points are built without pydantic's validation (model_construct): m3rt made every value, and validating a
point's floats one by one costs more than local mode's whole write. Dense and ColBERT vectors stay numpy arrays
for local mode (it keeps numpy arrays) and become lists for a server's client (what it serialises); sparse
vectors are lists of Python numbers (local mode's sparse search walks them in Python). ColBERT vectors are rounded to float16
here when the collection stores float16: a server stores exactly these values, and local mode (which keeps
float32 whatever the declared datatype) then holds the same ones, so both give the same scores. A passage with
no lexical weight (an empty text, only punctuation) gets no sparse vector: sparse searches skip it, as they
skip a passage sharing no token with the query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from m3rt.integrations.qdrant.layout import COLBERT, DENSE, SPARSE, TEXT, Layout
from m3rt.integrations.qdrant.pruning import Pruning, prune_passage

# Bytes of one stored value: a dense float32; a sparse entry (uint32 index + float32 weight); a ColBERT value.
DENSE_BYTES, SPARSE_ENTRY_BYTES = 4, 8
COLBERT_BYTES = {"float16": 2, "float32": 4}


@dataclass
class StoredBytes:
    """What the vectors written so far take in the store (vector data only, before any index), per output."""

    passages: int = 0
    colbert_vectors: int = 0
    colbert_vectors_encoded: int = 0  # before pruning
    bytes: dict = field(default_factory=lambda: {DENSE: 0, SPARSE: 0, COLBERT: 0})

    def per_passage(self) -> dict[str, float]:
        n = max(self.passages, 1)
        out = {k: v / n for k, v in self.bytes.items()}
        out["total"] = sum(self.bytes.values()) / n
        out["colbert_vectors"] = self.colbert_vectors / n
        return out


def point_id(value, where: str) -> int | str:
    """A Qdrant point id: an unsigned int, or a UUID (a uuid.UUID or its string), as a canonical string."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where} is bool, expected an int or a UUID")
    if isinstance(value, (int, np.integer)):
        if not 0 <= int(value) < 2 ** 64:
            raise ValueError(f"{where} is {int(value)}: Qdrant's integer ids are unsigned 64-bit")
        return int(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(f"{where} is {value!r}: a string id must be a UUID") from None
    raise TypeError(f"{where} is {type(value).__name__}, expected an int or a UUID")


def chunk_points(chunk, ids: list, texts: list[str], layout: Layout, pruning: Pruning | None,
                 tokens: list[np.ndarray] | None, stored: StoredBytes, as_lists: bool) -> list:
    """The points of one encoded chunk (ids, texts: this chunk's, in order); adds their bytes to `stored`.
    as_lists: dense and ColBERT vectors as lists (for a server), else numpy arrays (for local mode)."""
    from qdrant_client import models

    array = (lambda a: a.tolist()) if as_lists else (lambda a: a)
    colbert_bytes = COLBERT_BYTES[layout.colbert_dtype]
    points = []
    for k in range(len(chunk)):
        vector = {}
        if layout.dense:
            vector[DENSE] = array(chunk.dense[k])
            stored.bytes[DENSE] += DENSE_BYTES * layout.dense
        sparse_ids = sparse_weights = None
        if layout.sparse or (pruning is not None and pruning.by == "sparse"):
            sparse_ids, sparse_weights = chunk.sparse.row(k)
        if layout.sparse and len(sparse_ids):
            vector[SPARSE] = models.SparseVector.model_construct(indices=sparse_ids.tolist(),
                                                                 values=sparse_weights.tolist())
            stored.bytes[SPARSE] += SPARSE_ENTRY_BYTES * len(sparse_ids)
        if layout.colbert:
            rows = chunk.colbert.row(k)
            stored.colbert_vectors_encoded += len(rows)
            if pruning is not None:
                rows = prune_passage(rows, pruning, None if tokens is None else tokens[k], sparse_ids,
                                     sparse_weights)
            if layout.colbert_dtype == "float16":
                rows = rows.astype(np.float16).astype(np.float32)
            vector[COLBERT] = array(rows)
            stored.colbert_vectors += len(rows)
            stored.bytes[COLBERT] += colbert_bytes * layout.colbert * len(rows)
        points.append(models.PointStruct.model_construct(id=ids[k], vector=vector, payload={TEXT: texts[k]}))
    stored.passages += len(points)
    return points
