"""encode_files(): texts from arguments, a file or stdin, encoded chunk by chunk through M3Runtime.iter_encode
and written as they come (what `m3rt encode` runs): memory flat in the input's size, every chunk flushed, an
interrupted run keeps its complete rows and `resume` continues it.

Input: one text per line (a UTF-8 BOM dropped, CRLF and LF alike), JSONL (strings, or objects with a text
field and an optional id field), or a .json array of those. A line that is not valid in the encoding names the
file and the line. Output formats:
- jsonl: one object per text: "index", "id" (when the input had one), and the outputs asked for; floats with
  `precision_digits` significant digits (9: every float32 exactly).
- npy: the dense vectors, float32 [n, H] (a valid file at every flush: the header is rewritten as it grows).
- parquet (pyarrow): m3rt's one Parquet layout (schema.py, as embed-corpus writes, ColBERT in float32); one row
  group per chunk, written beside the output and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from m3rt.options import default_of, option
from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.outputs import Outputs

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

    def close(self, complete: bool = True) -> None:
        self.stream.close()  # complete or not: the rows written stay, for --resume


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

    def close(self, complete: bool = True) -> None:
        self.stream.close()  # a valid file of the rows written, complete or not


class ParquetWriter:
    """schema.py's layout, through shards.ShardWriter: the file appears whole under its name, or not at all."""

    def __init__(self, path: Path, settings: dict, tokens: Callable[[int], str] | None):
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ImportError("--format parquet needs pyarrow: pip install 'm3rt[parquet]'") from None
        from m3rt.corpus.shards import ShardWriter

        self.settings, self.tokens = settings, tokens
        self.shard = ShardWriter(path)
        self.with_ids: bool | None = None  # whether the input carries ids (every row, or none)

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
        self.shard.write(schema.to_table(ids, enc, self.settings, self.tokens))

    def close(self, complete: bool = True) -> None:
        from m3rt.corpus import schema

        if complete:
            empty = schema.empty_table(self.settings, tokens=self.tokens is not None)
            self.shard.commit(empty.schema)
        else:
            self.shard.abort()


# --------------------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class EncodeConfig:
    """Everything `m3rt encode` / encode_files takes besides the artifact and the texts."""

    input: str | None = option(None, "file of texts, one per line ('-' for stdin); .jsonl read as JSONL, .json as a "
                                     "JSON array")
    jsonl: bool = option(False, "input lines are JSON strings or objects")
    field: str = option("text", "text field of JSON objects")
    id_field: str = option("id", "id field of JSON objects, carried to every output row")
    encoding: str = option("utf-8", "encoding of the input (a BOM is dropped)")
    dense: bool = option(False, "output dense_vecs (the default when no output is chosen)")
    sparse: bool = option(False, "output lexical_weights (token id: weight)")
    sparse_tokens: bool = option(False, "with --sparse: also lexical_tokens (token text: weight)")
    colbert: bool = option(False, "output colbert_vecs")
    batch_size: int | None = option(None, "texts per engine call at most",
                                    default_help=str(default_of(RuntimeConfig, "batch_size")))
    max_length: int | None = option(None, "tokens per text; longer texts are cut and counted",
                                    default_help="512, or the model's limit when lower")
    chunk_size: int | None = option(None, "texts held and written at a time",
                                    default_help=str(default_of(RuntimeConfig, "chunk_size")))
    backend: str = option("auto", "auto, cpu, cuda, onnxruntime-tensorrt, tensorrt")
    output: str | None = option(None, "write here instead of stdout (needed for npy and parquet)")
    format: str = option("jsonl", "jsonl; npy: dense vectors float32 [n, H]; parquet: every output (pyarrow)",
                         choices=FORMATS)
    precision_digits: int = option(9, "significant digits of JSONL floats (9: every float32 exactly)")
    resume: bool = option(False, "continue an interrupted run: keep the --output file's complete rows, skip those "
                                 "texts")

    def __post_init__(self):
        from m3rt.runtime.config import as_int

        if self.format not in FORMATS:
            raise ValueError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if not isinstance(self.precision_digits, int) or not 1 <= self.precision_digits <= 17:
            raise ValueError(f"precision_digits must be 1..17, got {self.precision_digits}")
        for name in ("batch_size", "chunk_size"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_int(getattr(self, name), name, 1))

    @property
    def outputs(self) -> Outputs:
        return Outputs.chosen(self.dense, self.sparse, self.colbert)


def encode_files(artifact: str | Path, texts: list[str] | None = None, config: EncodeConfig | None = None, *,
                 progress: Callable[[int, int | None], None] | None = None, **options) -> dict:
    """Encode the texts (or config.input) and write each chunk as it is done; `options`: EncodeConfig's fields.
    Returns {"texts", "skipped", "output", "cut"}.

    Dense only when no output is chosen. `output` None: stdout (jsonl only). `resume`: an existing jsonl
    output's complete rows are kept, its last partial line dropped, and that many input texts skipped."""
    from m3rt import M3Runtime

    c = replace(config or EncodeConfig(), **options)
    input, output, format, outputs = c.input, c.output, c.format, c.outputs
    if texts and input is not None:
        raise ValueError("give texts as arguments or --input, not both")
    if format == "npy" and (outputs.sparse or outputs.colbert):
        raise ValueError("--format npy holds dense vectors only; use jsonl or parquet for sparse and ColBERT")
    if format != "jsonl" and output is None:
        raise ValueError(f"--format {format} needs --output FILE")
    if c.resume and (format != "jsonl" or output is None):
        raise ValueError("--resume continues a jsonl --output file")
    done = _resume_point(Path(output)) if c.resume else 0
    stream = _open_output(output, format, c.resume)  # before any work: an unwritable output fails now
    items = read_items(input, texts, jsonl=c.jsonl, field=c.field, id_field=c.id_field, encoding=c.encoding)
    for _ in range(done):
        if next(items, None) is None:
            break
    rt = None
    try:
        rt = M3Runtime(artifact, backend=c.backend, progress=progress)
        decode = rt.tokenizer.decode_one if c.sparse_tokens else None
        if format == "jsonl":
            writer = JsonlWriter(stream, c.precision_digits, decode)
        elif format == "npy":
            writer = NpyWriter(stream, rt.output_dims["dense"])
        else:
            from m3rt.corpus.schema import settings_for

            settings = settings_for(rt.manifest, outputs, dense_dims=rt.output_dims["dense"],
                                    colbert_dims=rt.output_dims["colbert"], colbert_dtype="float32")
            writer = ParquetWriter(Path(output), settings, decode)
        window: list[Item] = []

        def texts_of():
            for item in items:
                window.append(item)
                yield item.text

        written = cut = 0
        complete = False
        try:
            for enc in rt.iter_encode(texts_of(), batch_size=c.batch_size, max_length=c.max_length,
                                      chunk_size=c.chunk_size, **outputs.flags()):
                chunk = window[:len(enc)]
                del window[:len(enc)]
                writer.write(_shifted(enc, done), chunk)
                written += len(enc)
                cut += int(enc.truncated.sum())
            complete = True
        finally:
            writer.close(complete)
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
