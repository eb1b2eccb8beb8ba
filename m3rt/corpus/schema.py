"""The output shards' Parquet schema, and conversion of `Encoded` rows to it (pyarrow).

  id                int64 or string (as in the input)
  dense             list<float32>   [H] unit vector                       (dense)
  sparse_token_ids  list<int32>     token ids with a weight > 0           (sparse)
  sparse_weights    list<float32>   their weights, same order
  colbert_count     int32           ColBERT vectors in the row (tokens - 1) (colbert)
  colbert_vectors   large_binary    colbert_count x Hc float16, row-major, little-endian

ColBERT as packed float16 bytes, not list<list<float32>>: a row's vectors are one buffer, half the bytes,
that readers turn into an array without a copy (np.frombuffer(...).reshape(count, Hc), see colbert_rows), where a
nested list costs 4 bytes a value plus two levels of offsets and a conversion per row. The vectors are unit
length, so float16's ~5e-4 relative rounding moves a MaxSim score by ~1e-3 at most; float32 precision is in
dense. The file's key-value metadata `m3rt` holds the job's settings (artifact, outputs, widths), checked when
a job resumes into the same folder.
"""

from __future__ import annotations

import json

import numpy as np

METADATA_KEY = b"m3rt"


def outputs_of(dense: bool, sparse: bool, colbert: bool) -> tuple[str, ...]:
    """The outputs a job writes: those asked for, dense when none is."""
    return tuple(k for k, on in (("dense", dense), ("sparse", sparse), ("colbert", colbert)) if on) or ("dense",)


def encode_flags(outputs: tuple[str, ...]) -> dict:
    """M3Runtime's return_* arguments for `outputs`."""
    return {"return_dense": "dense" in outputs, "return_sparse": "sparse" in outputs,
            "return_colbert_vecs": "colbert" in outputs}


def to_table(ids: list, enc, settings: dict):
    """One pyarrow Table of `enc` (an Encoded chunk) with its ids, the job's settings in the schema metadata."""
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
    if enc.colbert is not None:
        cb = enc.colbert
        half = cb.vectors.astype("<f2", copy=False)
        row_bytes = cb.vectors.shape[1] * 2
        cols["colbert_count"] = pa.array(np.diff(cb.offsets).astype(np.int32))
        cols["colbert_vectors"] = pa.Array.from_buffers(  # 64-bit offsets: a chunk may pass 2 GB
            pa.large_binary(), len(ids), [None, pa.py_buffer((cb.offsets * row_bytes).astype(np.int64)),
                                          pa.py_buffer(np.ascontiguousarray(half))])
    table = pa.table(cols)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(settings, sort_keys=True).encode()})


def id_array(ids: list):
    """ids as one Arrow column: int64 when all are integers, string when all are strings."""
    import pyarrow as pa

    if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
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


def colbert_rows(table, width: int) -> list[np.ndarray]:
    """The ColBERT vectors of each row of a shard table, float16 [colbert_count, width] views (no copy)."""
    counts = table.column("colbert_count").to_numpy()
    blobs = table.column("colbert_vectors").to_pylist()
    return [np.frombuffer(b, "<f2").reshape(int(n), width) for b, n in zip(blobs, counts)]


def settings_for(manifest, outputs: tuple[str, ...]) -> dict:
    """What a shard's numbers depend on: the graph (its checksum), the outputs and their widths."""
    return {"schema": 1, "graph_sha256": manifest.data["files"][manifest.data["graph"]],
            "precision": manifest.precision, "outputs": list(outputs), "dense_dim": manifest.dims.hidden,
            "colbert_dim": manifest.dims.colbert}


def empty_table(settings: dict, id_type: str = "int64"):
    """A table with the shard schema and no rows (the output of an empty input shard)."""
    import pyarrow as pa

    fields = [pa.field("id", pa.int64() if id_type == "int64" else pa.string())]
    if "dense" in settings["outputs"]:
        fields.append(pa.field("dense", pa.list_(pa.float32())))
    if "sparse" in settings["outputs"]:
        fields += [pa.field("sparse_token_ids", pa.list_(pa.int32())),
                   pa.field("sparse_weights", pa.list_(pa.float32()))]
    if "colbert" in settings["outputs"]:
        fields += [pa.field("colbert_count", pa.int32()), pa.field("colbert_vectors", pa.large_binary())]
    schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(settings, sort_keys=True).encode()})
    return schema.empty_table()
