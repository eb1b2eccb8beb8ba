"""What an m3rt collection in Qdrant holds: its named vectors, their settings, and the check that an existing
collection is one this runtime can write to and search.

- `dense`: [H] float32, DOT (the vectors are unit length, so DOT is their cosine; COSINE would re-normalise);
- `sparse`: token id -> lexical weight, no modifier (BGE-M3's lexical score is the plain dot product; IDF would
  change it);
- `colbert`: a multivector [n_i, Hc], MAX_SIM, float16 by default, no HNSW graph (m=0): it only rescores
  candidates, and a graph over every token vector of a corpus would cost more than the vectors;
- payload `text`: the passage.
The settings m3rt needs again on reopening (ColBERT pruning) live in the collection's metadata under "m3rt".
"""

from __future__ import annotations

from dataclasses import dataclass

DENSE, SPARSE, COLBERT = "dense", "sparse", "colbert"
TEXT = "text"
METADATA_KEY = "m3rt"
COLBERT_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class Layout:
    """The stored outputs of a collection and their widths (dense/colbert None when not stored)."""

    dense: int | None
    sparse: bool
    colbert: int | None
    colbert_dtype: str = "float16"

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(k for k, on in ((DENSE, self.dense), (SPARSE, self.sparse), (COLBERT, self.colbert)) if on)


def layout_for(runtime, outputs, colbert_dtype: str) -> Layout:
    """The layout storing `outputs` (an m3rt Outputs) of this runtime."""
    if colbert_dtype not in COLBERT_DTYPES:
        raise ValueError(f"colbert_dtype must be one of {COLBERT_DTYPES}, got {colbert_dtype!r}")
    dims = runtime.output_dims
    return Layout(dense=dims["dense"] if outputs.dense else None, sparse=outputs.sparse,
                  colbert=dims["colbert"] if outputs.colbert else None, colbert_dtype=colbert_dtype)


def collection_config(layout: Layout) -> tuple[dict, dict | None]:
    """(vectors_config, sparse_vectors_config) for QdrantClient.create_collection."""
    from qdrant_client import models

    vectors = {}
    if layout.dense:
        vectors[DENSE] = models.VectorParams(size=layout.dense, distance=models.Distance.DOT)
    if layout.colbert:
        vectors[COLBERT] = models.VectorParams(
            size=layout.colbert, distance=models.Distance.DOT,
            datatype=models.Datatype.FLOAT16 if layout.colbert_dtype == "float16" else models.Datatype.FLOAT32,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0))
    sparse = {SPARSE: models.SparseVectorParams()} if layout.sparse else None
    return vectors, sparse


def read_layout(info, name: str, runtime) -> Layout:
    """The layout of an existing collection (QdrantClient.get_collection's answer), checked against the runtime:
    a ValueError says what does not fit."""
    from qdrant_client import models

    params = info.config.params
    vectors = params.vectors if isinstance(params.vectors, dict) else {}
    sparse = params.sparse_vectors or {}
    unknown = sorted(set(vectors) - {DENSE, COLBERT}) + sorted(set(sparse) - {SPARSE})
    if unknown or not (set(vectors) | set(sparse)):
        raise ValueError(f"collection {name!r} has vectors {sorted(vectors) + sorted(sparse)}: not made by "
                         f"HybridCollection (named vectors {DENSE!r}, {SPARSE!r}, {COLBERT!r})")
    dims = runtime.output_dims
    dense = colbert = None
    dtype = "float16"
    if DENSE in vectors:
        dense = int(vectors[DENSE].size)
        if dense != dims["dense"]:
            raise ValueError(f"collection {name!r} holds {dense}-dimensional dense vectors; this runtime gives "
                             f"{dims['dense']}")
        if vectors[DENSE].multivector_config is not None:
            raise ValueError(f"collection {name!r}: {DENSE!r} is a multivector, not a dense vector")
    if COLBERT in vectors:
        p = vectors[COLBERT]
        colbert = int(p.size)
        if colbert != dims["colbert"]:
            raise ValueError(f"collection {name!r} holds {colbert}-dimensional ColBERT vectors; this runtime gives "
                             f"{dims['colbert']}")
        if p.multivector_config is None or p.multivector_config.comparator != models.MultiVectorComparator.MAX_SIM:
            raise ValueError(f"collection {name!r}: {COLBERT!r} is not a MAX_SIM multivector")
        if p.distance != models.Distance.DOT:
            raise ValueError(f"collection {name!r}: {COLBERT!r} compares by {p.distance}, not DOT")
        dtype = "float32" if p.datatype in (None, models.Datatype.FLOAT32) else "float16"
    if SPARSE in sparse and sparse[SPARSE].modifier not in (None, models.Modifier.NONE):
        raise ValueError(f"collection {name!r}: its sparse vectors have the modifier {sparse[SPARSE].modifier}; "
                         "BGE-M3's lexical score is the plain dot product (no modifier)")
    return Layout(dense=dense, sparse=SPARSE in sparse, colbert=colbert, colbert_dtype=dtype)
