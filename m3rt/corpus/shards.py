"""Input and output shards: which files make the input, how a shard's rows are read, where its output goes,
and how an output shard is written so that it exists whole or not at all."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from m3rt.corpus.inputs import json_lines

INPUT_SUFFIXES = (".jsonl", ".parquet")


def input_shards(input: str | Path) -> list[Path]:
    """A file, or a folder's .jsonl / .parquet files (not recursive), sorted."""
    path = Path(input)
    if path.is_file():
        if path.suffix not in INPUT_SUFFIXES:
            raise ValueError(f"{path}: an input shard must be .jsonl or .parquet")
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or folder")
    shards = sorted(p for p in path.iterdir() if p.suffix in INPUT_SUFFIXES and not p.is_dir())
    for p in shards:
        if not p.is_file():  # a FIFO or a device: read twice (counted, then encoded), it would give nothing back
            raise ValueError(f"{p}: not a regular file; corpus shards must be regular files")
    if not shards:
        raise ValueError(f"{path}: holds no .jsonl or .parquet file")
    stems = [p.stem for p in shards]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise ValueError(f"{path}: shards {clash} exist as both .jsonl and .parquet: their outputs would clash")
    return shards


def output_path(out: Path, shard: Path) -> Path:
    return out / f"{shard.stem}.parquet"


def read_rows(shard: Path, id_field: str, text_field: str, batch_rows: int = 4096) -> Iterator[list[tuple]]:
    """(id, text) pairs of a shard in lists of at most batch_rows; a missing or mistyped field is a ValueError
    naming the file and line (JSONL) or row (Parquet)."""
    if shard.suffix == ".jsonl":
        yield from _jsonl_rows(shard, id_field, text_field, batch_rows)
    else:
        yield from _parquet_rows(shard, id_field, text_field, batch_rows)


def _jsonl_rows(shard, id_field, text_field, batch_rows, offset=0, first_line=1, limit=None):
    """From byte `offset` (the start of line `first_line`), at most `limit` rows."""
    batch, done = [], 0
    with open(shard, "rb") as f:
        f.seek(offset)
        for n, obj in json_lines(f, str(shard), first_line=first_line):
            batch.append(_pair(obj, id_field, text_field, f"{shard}:{n}"))
            done += 1
            if len(batch) == batch_rows:
                yield batch
                batch = []
            if done == limit:
                break
    if batch:
        yield batch


def index_chunks(shard: Path, chunk_rows: int) -> list[tuple]:
    """The shard cut into pieces that read_chunk reads on their own: JSONL every chunk_rows rows, as (byte
    offset, line number, rows); Parquet by row group, as (row group, rows)."""
    if shard.suffix == ".jsonl":
        chunks, offset, start, first, rows = [], 0, 0, 1, 0
        with open(shard, "rb") as f:
            for n, raw in enumerate(f, 1):
                line = raw.decode("utf-8", "replace")
                if (line.removeprefix("\ufeff") if n == 1 else line).strip():  # blank as inputs.json_lines sees it
                    if rows == 0:
                        start, first = offset, n
                    rows += 1
                    if rows == chunk_rows:
                        chunks.append((start, first, rows))
                        rows = 0
                offset += len(raw)
        if rows:
            chunks.append((start, first, rows))
        return chunks
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(shard).metadata
    return [(g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups) if meta.row_group(g).num_rows]


def coarsen(chunks: list[tuple], rows: int) -> list[tuple]:
    """index_chunks' JSONL pieces (offset, line, n) merged into consecutive runs of up to `rows` rows; Parquet
    row groups as they are."""
    if not chunks or len(chunks[0]) != 3:
        return chunks
    merged = [chunks[0]]
    for offset, line, n in chunks[1:]:
        start, first, have = merged[-1]
        if have + n <= rows:
            merged[-1] = (start, first, have + n)
        else:
            merged.append((offset, line, n))
    return merged


def read_chunk(shard: Path, chunk: tuple, id_field: str, text_field: str) -> list[tuple]:
    """The (id, text) pairs of one index_chunks piece, checked as read_rows checks them."""
    if shard.suffix == ".jsonl":
        offset, first, rows = chunk
        return [p for batch in _jsonl_rows(shard, id_field, text_field, rows, offset, first, rows) for p in batch]
    import pyarrow.parquet as pq

    group = chunk[0]
    f = pq.ParquetFile(shard)
    names = f.schema_arrow.names
    for field in (id_field, text_field):
        if field not in names:
            raise ValueError(f"{shard}: no column {field!r} (columns: {', '.join(names)})")
    first = sum(f.metadata.row_group(g).num_rows for g in range(group))
    table = f.read_row_group(group, columns=[id_field, text_field])
    ids, texts = table.column(0).to_pylist(), table.column(1).to_pylist()
    return [_pair({id_field: i, text_field: t}, id_field, text_field, f"{shard} row {first + k}")
            for k, (i, t) in enumerate(zip(ids, texts))]


def _parquet_rows(shard, id_field, text_field, batch_rows):
    import pyarrow.parquet as pq

    f = pq.ParquetFile(shard)
    names = f.schema_arrow.names
    for field in (id_field, text_field):
        if field not in names:
            raise ValueError(f"{shard}: no column {field!r} (columns: {', '.join(names)})")
    row = 0
    for rb in f.iter_batches(batch_size=batch_rows, columns=[id_field, text_field]):
        ids, texts = rb.column(0).to_pylist(), rb.column(1).to_pylist()
        yield [_pair({id_field: i, text_field: t}, id_field, text_field, f"{shard} row {row + k}")
               for k, (i, t) in enumerate(zip(ids, texts))]
        row += len(ids)


def _pair(obj, id_field: str, text_field: str, where: str) -> tuple:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object with {id_field!r} and {text_field!r}")
    if id_field not in obj or obj[id_field] is None:
        raise ValueError(f"{where}: no {id_field!r} (every row needs an id)")
    if not isinstance(obj.get(text_field), str):
        got = type(obj.get(text_field)).__name__ if text_field in obj else "nothing"
        raise ValueError(f"{where}: {text_field!r} must be a string, got {got}")
    row_id = obj[id_field]
    if isinstance(row_id, bool) or not isinstance(row_id, (int, str)):
        raise ValueError(f"{where}: {id_field!r} must be an integer or a string, got {type(row_id).__name__}")
    if isinstance(row_id, int) and not -(1 << 63) <= row_id < 1 << 63:
        raise ValueError(f"{where}: {id_field!r} {row_id} does not fit in 64 bits (use a string id)")
    return row_id, obj[text_field]


class ShardWriter:
    """Writes one output shard: Parquet row groups into a hidden temporary file beside it, renamed into place
    (after an fsync) by commit(); abort() or an exception leaves no file under the final name."""

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        self.writer = None
        self.rows = 0

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(str(self.tmp), table.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self, empty_schema=None) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:  # an empty input shard still gets its (empty) output: it is done
            self.writer = pq.ParquetWriter(str(self.tmp), empty_schema)
        self.writer.close()
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.final)
        dir_fd = os.open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def clean_leftovers(out: Path) -> list[Path]:
    """Temporary files of interrupted runs (hidden .*.parquet.tmp-*): removed before a job starts."""
    gone = sorted(out.glob(".*.parquet.tmp-*"))
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def write_shard(final: Path, tables, settings: dict, progress=None) -> int:
    """Write `tables` (an iterable of shard-schema pyarrow Tables; raising inside it aborts) as the shard `final`:
    whole, with the job's settings in its metadata, or not at all. progress(rows so far) after each table.
    Returns the rows written."""
    from m3rt.corpus.schema import empty_table

    empty = empty_table(settings)
    writer = ShardWriter(final)
    try:
        for table in tables:
            if table.num_rows:
                writer.write(table.replace_schema_metadata(empty.schema.metadata))
            if progress is not None:
                progress(writer.rows)
        writer.commit(empty.schema)
    except BaseException:
        writer.abort()
        raise
    return writer.rows
