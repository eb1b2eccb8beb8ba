"""encode_files(): texts from arguments, a file or stdin, encoded chunk by chunk through M3Runtime.iter_encode
and written as they come (what `m3rt encode` runs): memory flat in the input's size, every chunk flushed, an
interrupted run keeps its complete rows and `resume` continues it.

Input: one text per line (a UTF-8 BOM dropped, CRLF and LF alike), JSONL (strings, or objects with a text
field and an optional id field), or a .json array of those. A line that is not valid in the encoding names the
file and the line. Output formats:
- jsonl: one object per text: "index", "id" (when the input had one), and the outputs asked for; floats with
  `precision_digits` significant digits (9: every float32 exactly).
- npy: the dense vectors, float32 [n, H] (a valid file at every flush: the header is rewritten as it grows).
- parquet (pyarrow): columns index, id, dense_vecs, lexical_weights (token ids and weights),
  lexical_tokens, colbert_vecs; one row group per chunk.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("jsonl", "npy", "parquet")


@dataclass(frozen=True)
class Item:
    text: str
    id: object = None


# ------------------------------------------------------------------------------------------- input
def read_items(input: str | None = None, texts: Iterable[str] | None = None, *, jsonl: bool = False,
               field: str = "text", id_field: str = "id", encoding: str = "utf-8") -> Iterator[Item]:
    """The input's texts (and ids), lazily."""
    if texts:
        yield from (Item(t) for t in texts)
        return
    if input in (None, "-"):
        if sys.stdin.isatty():
            raise ValueError("no texts: pass them as arguments, --input FILE, or pipe them on stdin")
        name, stream = "<stdin>", sys.stdin.buffer
    else:
        path = Path(input)
        if not path.is_file():
            raise ValueError(f"{input}: no such file")
        name, stream = input, open(path, "rb")
    with stream if stream is not sys.stdin.buffer else _no_close(stream):
        if name.endswith(".json"):
            yield from _json_array(stream, name, field, id_field, encoding)
            return
        as_json = jsonl or name.endswith(".jsonl")
        for n, line in enumerate(_lines(stream, name, encoding), 1):
            if not as_json:
                yield Item(line)
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{name}:{n}: not valid JSON ({e.msg})") from None
            yield _item(value, f"{name}:{n}", field, id_field)


def count_items(input: str | None, *, jsonl: bool = False) -> int | None:
    """How many texts a regular file holds (for a progress bar's total), None for stdin and JSON arrays."""
    if input in (None, "-") or input.endswith(".json") or not Path(input).is_file():
        return None
    with open(input, "rb") as f:
        if jsonl or input.endswith(".jsonl"):
            return sum(1 for line in f if line.strip())
        return sum(1 for _ in f)


def _lines(stream, name: str, encoding: str) -> Iterator[str]:
    for n, raw in enumerate(stream, 1):
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}:{n}: not valid {encoding} ({e.reason} at byte {e.start} of the line); "
                             "pass --encoding") from None
        if n == 1:
            line = line.removeprefix("\ufeff")
        yield line.rstrip("\n").removesuffix("\r")


def _json_array(stream, name, field, id_field, encoding) -> Iterator[Item]:
    try:
        data = json.loads(stream.read().decode(encoding).removeprefix("\ufeff"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not valid {encoding} ({e.reason} at byte {e.start}); pass --encoding") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a JSON array of strings or objects, got {type(data).__name__}")
    for i, value in enumerate(data):
        yield _item(value, f"{name}[{i}]", field, id_field)


def _item(value, where: str, field: str, id_field: str) -> Item:
    if isinstance(value, str):
        return Item(value)
    if isinstance(value, dict) and isinstance(value.get(field), str):
        return Item(value[field], value.get(id_field))
    raise ValueError(f"{where}: expected a JSON string or an object with a string {field!r} field")


class _no_close:
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------------------------------ output
class JsonlWriter:
    def __init__(self, stream, digits: int, tokens: Callable[[int], str] | None):
        self.stream, self.fmt, self.tokens = stream, f"%.{digits}g", tokens

    def write(self, enc, items: list[Item]) -> None:
        for i, item in enumerate(items):
            parts = [f'"index": {enc.start + i}']
            if item.id is not None:
                parts.append(f'"id": {json.dumps(item.id, ensure_ascii=False)}')
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

    def close(self) -> None:
        self.stream.close()


class NpyWriter:
    """Dense vectors as one .npy; the header is rewritten after every chunk, so the file is always valid."""

    HEADER = 128  # bytes: magic, length and the header dict padded (shape up to 12 digits)

    def __init__(self, stream, width: int):
        self.stream, self.width, self.rows = stream, width, 0
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

    def close(self) -> None:
        self.stream.close()


class ParquetWriter:
    def __init__(self, path: Path, tokens: Callable[[int], str] | None):
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ImportError("--format parquet needs pyarrow: pip install 'm3rt[parquet]'") from None
        self.path, self.tokens, self.writer = path, tokens, None

    def write(self, enc, items: list[Item]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {"index": pa.array(np.arange(enc.start, enc.start + len(items), dtype=np.int64)),
                "id": pa.array([None if it.id is None else str(it.id) for it in items], pa.string())}
        if enc.dense is not None:
            cols["dense_vecs"] = pa.FixedSizeListArray.from_arrays(pa.array(enc.dense.ravel()), enc.dense.shape[1])
        if enc.sparse is not None:
            sp = enc.sparse
            cols["lexical_ids"] = pa.ListArray.from_arrays(pa.array(sp.indptr.astype(np.int32)), pa.array(sp.token_ids))
            cols["lexical_weights"] = pa.ListArray.from_arrays(pa.array(sp.indptr.astype(np.int32)),
                                                               pa.array(sp.weights))
            if self.tokens is not None:
                cols["lexical_tokens"] = pa.ListArray.from_arrays(
                    pa.array(sp.indptr.astype(np.int32)), pa.array([self.tokens(t) for t in sp.token_ids.tolist()]))
        if enc.colbert is not None:
            cb = enc.colbert
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(cb.vectors.ravel()), cb.vectors.shape[1])
            cols["colbert_vecs"] = pa.ListArray.from_arrays(pa.array(cb.offsets.astype(np.int32)), vectors)
        table = pa.table(cols)
        if self.writer is None:
            self.writer = pq.ParquetWriter(str(self.path), table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------------------- the job
def encode_files(artifact: str | Path, texts: list[str] | None = None, *, input: str | None = None,
                 output: str | None = None, format: str = "jsonl", dense: bool = False, sparse: bool = False,
                 colbert: bool = False, sparse_tokens: bool = False, batch_size: int = 256,
                 max_length: int | None = None, backend: str = "auto", precision_digits: int = 9,
                 resume: bool = False, chunk_size: int = 1024, jsonl: bool = False, field: str = "text",
                 id_field: str = "id", encoding: str = "utf-8",
                 progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Encode the input and write each chunk as it is done; returns {"texts", "skipped", "output", "cut"}.

    Dense only when no output is chosen. `output` None: stdout (jsonl only). `resume`: an existing jsonl
    output's complete rows are kept, its last partial line dropped, and that many input texts skipped."""
    from m3rt import M3Runtime

    if format not in FORMATS:
        raise ValueError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    if texts and input is not None:
        raise ValueError("give texts as arguments or --input, not both")
    dense = dense or not (sparse or colbert)
    if format == "npy" and (sparse or colbert or not dense):
        raise ValueError("--format npy holds dense vectors only; use jsonl or parquet for sparse and ColBERT")
    if format != "jsonl" and output is None:
        raise ValueError(f"--format {format} needs --output FILE")
    if resume and (format != "jsonl" or output is None):
        raise ValueError("--resume continues a jsonl --output file")
    if not 1 <= precision_digits <= 17:
        raise ValueError(f"precision_digits must be 1..17, got {precision_digits}")
    done = _resume_point(Path(output)) if resume else 0
    stream = _open_output(output, format, resume)  # before any work: an unwritable output fails now
    items = read_items(input, texts, jsonl=jsonl, field=field, id_field=id_field, encoding=encoding)
    for _ in range(done):
        if next(items, None) is None:
            break
    rt = None
    try:
        rt = M3Runtime(artifact, backend=backend, progress=progress)
        decode = rt.tokenizer.decode_one if sparse_tokens else None
        if format == "jsonl":
            writer = JsonlWriter(stream, precision_digits, decode)
        elif format == "npy":
            writer = NpyWriter(stream, rt.pipeline.hidden)
        else:
            writer = ParquetWriter(Path(output), decode)
        window: list[Item] = []

        def texts_of():
            for item in items:
                window.append(item)
                yield item.text

        written = cut = 0
        try:
            for enc in rt.iter_encode(texts_of(), batch_size=batch_size, max_length=max_length,
                                      return_dense=dense, return_sparse=sparse, return_colbert_vecs=colbert,
                                      chunk_size=chunk_size):
                chunk = window[:len(enc)]
                del window[:len(enc)]
                writer.write(_shifted(enc, done), chunk)
                written += len(enc)
                cut += int(enc.truncated.sum())
        finally:
            writer.close()
    except BaseException:
        if rt is None and stream is not None:
            stream.close()
        raise
    finally:
        if rt is not None:
            rt.close()
    return {"texts": written, "skipped": done, "output": output, "cut": cut}


def _shifted(enc, done: int):
    """Indices count from the start of the whole input, the resumed rows included."""
    if not done:
        return enc
    from dataclasses import replace

    return replace(enc, start=enc.start + done)


def _open_output(output: str | None, format: str, resume: bool):
    if output is None:
        return _Unclosed(sys.stdout)
    path = Path(output)
    if path.is_dir():
        raise ValueError(f"{output}: is a directory")
    if format == "parquet":
        try:  # the writer opens it at the first chunk; check now that it can be written
            with open(path, "ab"):
                pass
        except OSError as e:
            raise ValueError(f"{output}: cannot be written ({e.strerror})") from None
        return None
    try:
        if format == "npy":
            return open(path, "w+b")
        return open(path, "a" if resume else "w", encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{output}: cannot be written ({e.strerror})") from None


class _Unclosed:
    """stdout: written to and flushed, never closed."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def close(self):
        self.stream.flush()


def _resume_point(path: Path) -> int:
    """Complete rows of an existing jsonl output; a partial last line (an interrupted write) is cut off."""
    if not path.is_file():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
    rows = data[:end].count(b"\n")
    if rows:
        last = json.loads(data[:end].splitlines()[-1])
        if last.get("index") != rows - 1:
            raise ValueError(f"{path}: its last row has index {last.get('index')}, not {rows - 1}: not an m3rt "
                             "encode output written in order; refusing to resume it")
    return rows
