"""`m3rt encode`'s output formats, written chunk by chunk as the runtime yields them:
- jsonl: one object per text: "index", "id" (when the input had one), and the outputs asked for; floats with
  `digits` significant digits (9: every float32 exactly). Written in place, row by row and flushed per chunk, so
  an interrupted run keeps its complete rows for --resume.
- npy: the dense vectors, float32 [n, H]: a valid file at every flush (the header is rewritten as it grows),
  written beside the output and renamed into place when complete.
- parquet (pyarrow): m3rt's one Parquet layout (schema.py, ColBERT in float32), one row group per chunk, through
  shards.ShardWriter: the file appears whole under its name, or not at all.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np

from m3rt.corpus.inputs import Item


class JsonlWriter:
    def __init__(self, stream, digits: int, tokens: Callable[[int], str] | None, replaces: Path | None = None):
        self.stream, self.fmt, self.tokens, self.replaces = stream, f"%.{digits}g", tokens, replaces

    @classmethod
    def replacing(cls, path: Path, digits: int, tokens) -> "JsonlWriter":
        """Rows written beside `path`, renamed onto it when complete: the file it replaces stays until then."""
        tmp = _temp_beside(path)
        writer = cls(open(tmp, "w", encoding="utf-8"), digits, tokens, replaces=path)
        writer.tmp = tmp
        return writer

    def write(self, enc, items: list[Item]) -> None:
        for i, item in enumerate(items):
            parts = [f'"index": {enc.start + i}']
            if item.id is not None:
                try:
                    parts.append(f'"id": {json.dumps(item.id, ensure_ascii=False, allow_nan=False)}')
                except ValueError:
                    raise ValueError(f"input row {enc.start + i}: id {item.id!r} is not valid JSON") from None
            if enc.dense is not None:
                parts.append(f'"dense_vecs": {self._floats(enc.dense[i])}')
            if enc.sparse is not None:
                ids, weights = enc.sparse.row(i)
                values = [self.fmt % w for w in weights.tolist()]
                parts.append('"lexical_weights": {' + ", ".join(
                    f'"{t}": {v}' for t, v in zip(ids.tolist(), values)) + "}")
                if self.tokens is not None:
                    parts.append('"lexical_tokens": {' + ", ".join(
                        f"{json.dumps(self.tokens(t), ensure_ascii=False)}: {v}"
                        for t, v in zip(ids.tolist(), values)) + "}")
            if enc.colbert is not None:
                parts.append('"colbert_vecs": [' + ", ".join(self._floats(v) for v in enc.colbert.row(i)) + "]")
            self.stream.write("{" + ", ".join(parts) + "}\n")  # row by row: no chunk-sized string
        self.stream.flush()

    def _floats(self, values: np.ndarray) -> str:
        fmt = self.fmt
        return "[" + ", ".join([fmt % v for v in values.tolist()]) + "]"

    def close(self, complete: bool = True) -> None:
        if self.replaces is None:
            self.stream.close()  # complete or not: the rows written stay, for --resume
        else:
            _finish(self.stream, self.tmp, self.replaces, complete)


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _finish(stream, tmp: Path, final: Path, complete: bool) -> None:
    """A file written beside its final name: renamed onto it (after an fsync) when complete, else removed."""
    try:
        if complete:
            stream.flush()
            os.fsync(stream.fileno())
    finally:
        stream.close()
        if complete:
            os.replace(tmp, final)
        else:
            tmp.unlink(missing_ok=True)


class NpyWriter:
    """Dense vectors as one .npy, written beside `path` and renamed onto it when complete."""

    HEADER = 128  # bytes: magic, length and the header dict padded (shape up to 12 digits)

    def __init__(self, path: Path, width: int):
        self.path, self.width, self.rows = Path(path), width, 0
        self.tmp = _temp_beside(self.path)
        self.stream = open(self.tmp, "w+b")
        self._header()

    def _header(self) -> None:
        text = repr({"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.width)})
        body = text.ljust(self.HEADER - 10 - 1) + "\n"
        self.stream.seek(0)
        self.stream.write(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1"))
        self.stream.seek(0, os.SEEK_END)

    def write(self, enc, items: list[Item]) -> None:
        self.stream.write(np.ascontiguousarray(enc.dense, dtype="<f4").tobytes())
        self.rows += len(items)
        self._header()
        self.stream.flush()

    def close(self, complete: bool = True) -> None:
        _finish(self.stream, self.tmp, self.path, complete)


class ParquetWriter:
    """schema.py's layout, through shards.ShardWriter: the file appears whole under its name, or not at all."""

    def __init__(self, path: Path, settings: dict, tokens: Callable[[int], str] | None):
        from m3rt.corpus.shards import ShardWriter

        self.settings, self.tokens = settings, tokens
        self.shard = ShardWriter(Path(path))
        self.with_ids: bool | None = None  # whether the input carries ids (every row, or none)
        self.id_kind: type | None = None  # int or str: one Parquet column type for the whole file

    def write(self, enc, items: list[Item]) -> None:
        from m3rt.corpus import schema

        ids = []
        for i, item in enumerate(items):
            if self.with_ids is None:
                self.with_ids = item.id is not None
            if (item.id is not None) != self.with_ids:
                raise ValueError(f"input row {enc.start + i} {'has no id' if self.with_ids else 'has an id'}, unlike "
                                 "the rows before it: --format parquet needs an id on every row or on none")
            ids.append(item.id if self.with_ids else enc.start + i)
            kind = str if isinstance(ids[-1], str) else int
            if self.id_kind is None:
                self.id_kind = kind
            if kind is not self.id_kind:
                raise ValueError(f"input row {enc.start + i}: a {kind.__name__} id after {self.id_kind.__name__} ones; "
                                 "--format parquet needs ids of one type (all integers or all strings)")
        try:
            table = schema.to_table(ids, enc, self.settings, self.tokens)
        except ValueError as e:
            raise ValueError(f"input rows {enc.start}..{enc.start + len(items) - 1}: {e}") from None
        self.shard.write(table)

    def close(self, complete: bool = True) -> None:
        from m3rt.corpus import schema

        if complete:
            empty = schema.empty_table(self.settings, tokens=self.tokens is not None)
            self.shard.commit(empty.schema)
        else:
            self.shard.abort()


def require_pyarrow(what: str = "--format parquet") -> None:
    """Before any work: a missing pyarrow named with the extra that brings it, not found at the first write."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError(f"{what} needs pyarrow: pip install 'm3rt[parquet]'") from None
