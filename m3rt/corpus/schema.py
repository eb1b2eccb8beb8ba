"""m3rt's one Parquet layout for `Encoded` rows (pyarrow): embed-corpus's output shards and
`m3rt encode --format parquet`.

  id                int64 or string   the input's ids (`m3rt encode`: the row's index where the input has none)
  dense             list<float32>     [H] unit vector                         (dense)
  sparse_token_ids  list<int32>       token ids with a weight > 0             (sparse)
  sparse_weights    list<float32>     their weights, same order
  sparse_tokens     list<string>      their token texts                       (m3rt encode --sparse-tokens)
  colbert_count     int32             ColBERT vectors in the row (tokens - 1) (colbert)
  colbert_vectors   large_binary      colbert_count x Hc, row-major, little-endian, of settings' colbert_dtype

ColBERT as packed bytes, not list<list<float32>>: a row's vectors are one buffer that readers turn into an
array without a copy (colbert_rows), where a nested list costs two levels of offsets and a conversion per row.
embed-corpus stores float16 (half the bytes; the vectors are unit length, so float16's ~5e-4 relative rounding
moves a MaxSim score by ~1e-3 at most; float32 precision is in dense); `m3rt encode` float32, exact like its
other formats. The file's key-value metadata `m3rt` holds the settings (graph checksum, outputs, widths,
colbert_dtype), checked when a job resumes into the same folder.
"""

from __future__ import annotations

import json

import numpy as np

METADATA_KEY = b"m3rt"


COLBERT_DTYPES = {"float16": "<f2", "float32": "<f4"}


def to_table(ids: list, enc, settings: dict, tokens=None):
    """One pyarrow Table of `enc` (an Encoded chunk) with its ids, the settings in the schema metadata;
    tokens(token id) -> text adds sparse_tokens."""
    import pyarrow as pa

    cols = {"id": id_array(ids)}
    if enc.dense is not None:
        cols["dense"] = pa.ListArray.from_arrays(
            pa.array(np.arange(0, enc.dense.size + 1, enc.dense.shape[1], dtype=np.int32)),
            pa.array(enc.dense.ravel(), pa.float32()))
    if enc.sparse is not None:
        sp = enc.sparse
        offsets = pa.array(sp.indptr.astype(np.int32))
        cols["sparse_token_ids"] = pa.ListArray.from_arrays(offsets, pa.array(sp.token_ids.astype(np.int32)))
        cols["sparse_weights"] = pa.ListArray.from_arrays(offsets, pa.array(sp.weights.astype(np.float32)))
        if tokens is not None:
            cols["sparse_tokens"] = pa.ListArray.from_arrays(
                offsets, pa.array([tokens(t) for t in sp.token_ids.tolist()], pa.string()))
    if enc.colbert is not None:
        cb = enc.colbert
        values = cb.vectors.astype(COLBERT_DTYPES[colbert_dtype(settings)], copy=False)
        row_bytes = cb.vectors.shape[1] * values.itemsize
        cols["colbert_count"] = pa.array(np.diff(cb.offsets).astype(np.int32))
        cols["colbert_vectors"] = pa.Array.from_buffers(  # 64-bit offsets: a chunk may pass 2 GB
            pa.large_binary(), len(ids), [None, pa.py_buffer((cb.offsets * row_bytes).astype(np.int64)),
                                          pa.py_buffer(np.ascontiguousarray(values))])
    table = pa.table(cols)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(settings, sort_keys=True).encode()})


def id_array(ids: list):
    """ids as one Arrow column: int64 when all are integers, string when all are strings."""
    import pyarrow as pa

    if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        big = next((i for i in ids if not -(1 << 63) <= int(i) < 1 << 63), None)
        if big is not None:
            raise ValueError(f"id {big} does not fit in 64 bits (use string ids)")
        return pa.array(ids, pa.int64())
    if all(isinstance(i, str) for i in ids):
        return pa.array(ids, pa.string())
    kinds = sorted({type(i).__name__ for i in ids})
    raise ValueError(f"ids must be all integers or all strings, got {', '.join(kinds)}")


def settings_of(path) -> dict | None:
    """The m3rt settings a finished shard was written with (None for a file m3rt did not write)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else None


def colbert_rows(table) -> list[np.ndarray]:
    """The ColBERT vectors of each row of a table of this layout: [colbert_count, Hc] views (no copy), of the
    dtype and width its settings record."""
    settings = settings_of_table(table)
    dtype, width = COLBERT_DTYPES[colbert_dtype(settings)], int(settings["colbert_dim"])
    counts = table.column("colbert_count").to_numpy()
    blobs = table.column("colbert_vectors").to_pylist()
    return [np.frombuffer(b, dtype).reshape(int(n), width) for b, n in zip(blobs, counts)]


def settings_for(manifest, outputs, colbert_dims: int | None = None, colbert_dtype: str = "float16",
                 dense_dims: int | None = None) -> dict:
    """What a table's numbers depend on: the graph (its checksum), the outputs (an Outputs), their widths
    (the artifact's unless cut to fewer) and how ColBERT vectors are stored."""
    if colbert_dtype not in COLBERT_DTYPES:
        raise ValueError(f"colbert_dtype must be one of {', '.join(COLBERT_DTYPES)}, got {colbert_dtype!r}")
    settings = {"schema": 1, "graph_sha256": manifest.graph_sha256, "precision": manifest.precision,
                "outputs": list(outputs.names), "dense_dim": dense_dims or manifest.dims.hidden,
                "colbert_dim": colbert_dims or manifest.dims.colbert}
    if colbert_dtype != "float16":  # float16 is what a setting without the key means (shards written before it)
        settings["colbert_dtype"] = colbert_dtype
    return settings


def colbert_dtype(settings: dict) -> str:
    return settings.get("colbert_dtype", "float16")


def settings_of_table(table) -> dict:
    meta = table.schema.metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError("not a table m3rt wrote: no m3rt settings in its metadata")
    return json.loads(meta[METADATA_KEY])


def empty_table(settings: dict, id_type: str = "int64", tokens: bool = False):
    """A table with the shard schema and no rows (the output of an empty input shard)."""
    import pyarrow as pa

    fields = [pa.field("id", pa.int64() if id_type == "int64" else pa.string())]
    if "dense" in settings["outputs"]:
        fields.append(pa.field("dense", pa.list_(pa.float32())))
    if "sparse" in settings["outputs"]:
        fields += [pa.field("sparse_token_ids", pa.list_(pa.int32())),
                   pa.field("sparse_weights", pa.list_(pa.float32()))]
        if tokens:
            fields.append(pa.field("sparse_tokens", pa.list_(pa.string())))
    if "colbert" in settings["outputs"]:
        fields += [pa.field("colbert_count", pa.int32()), pa.field("colbert_vectors", pa.large_binary())]
    schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(settings, sort_keys=True).encode()})
    return schema.empty_table()
