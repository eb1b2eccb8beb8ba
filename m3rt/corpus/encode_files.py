"""encode_files(): texts from arguments, a file or stdin, encoded chunk by chunk through M3Runtime.iter_encode
and written as they come (what `m3rt encode` runs): memory flat in the input's size, every chunk flushed.

Nothing is opened for writing until the options, the input and the artifact are checked. An existing output is
replaced only with `overwrite`, or continued with `resume`, which first checks the run's record (run_record.py)
against this run's settings and input; npy and parquet outputs appear whole or not at all (writers.py). One
writer per output (locking.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from m3rt.corpus.inputs import Input, check_encoding
from m3rt.corpus.run_record import InputDigest, RunRecord, complete_rows
from m3rt.corpus.writers import JsonlWriter, NpyWriter, ParquetWriter, require_pyarrow
from m3rt.locking import exclusive_lock
from m3rt.options import default_of, option
from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.outputs import Outputs

FORMATS = ("jsonl", "npy", "parquet")


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
    resume: bool = option(False, "continue an interrupted jsonl run: keep the --output file's complete rows and skip "
                                 "those texts, after checking it was written by this run's settings and input")
    overwrite: bool = option(False, "replace an existing --output (without --resume or --overwrite, an existing "
                                    "output is an error)")

    def __post_init__(self):
        from m3rt.runtime.config import as_int

        if self.resume and self.overwrite:
            raise ValueError("--resume continues an output, --overwrite replaces it: give one of them")
        if self.sparse_tokens and not self.sparse:
            raise ValueError("--sparse-tokens adds the tokens' text to the sparse weights: give --sparse too")
        check_encoding(self.encoding)
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
    Returns {"texts", "skipped", "output", "cut"}. Dense only when no output is chosen; `output` None: stdout
    (jsonl only)."""
    c = replace(config or EncodeConfig(), **options)
    output = _check_options(c, texts)
    source = Input(c.input, texts, jsonl=c.jsonl, field=c.field, id_field=c.id_field, encoding=c.encoding)
    try:
        if output is None:
            return _run(artifact, c, source, None, progress)
        with exclusive_lock(output, "another m3rt encode"):
            return _run(artifact, c, source, output, progress)
    finally:
        source.close()


def _check_options(c: EncodeConfig, texts) -> Path | None:
    """The output path (None: stdout), once every option and the output's state allow the run."""
    if texts and c.input is not None:
        raise ValueError("give texts as arguments or --input, not both")
    if c.format == "npy" and (c.outputs.sparse or c.outputs.colbert):
        raise ValueError("--format npy holds dense vectors only; use jsonl or parquet for sparse and ColBERT")
    if c.format == "parquet":
        require_pyarrow()
    if c.output is None:
        if c.format != "jsonl":
            raise ValueError(f"--format {c.format} needs --output FILE")
        if c.resume or c.overwrite:
            raise ValueError("--resume and --overwrite apply to an --output file")
        return None
    output = Path(c.output)
    if output.is_dir():
        raise ValueError(f"{output}: is a directory")
    if not output.parent.is_dir():
        raise ValueError(f"{output}: cannot be written (No such file or directory); make the folder {output.parent} first")
    if not os.access(output if output.exists() else output.parent, os.W_OK):
        raise ValueError(f"{output}: cannot be written (permission denied)")
    if c.resume and c.format != "jsonl":
        raise ValueError("--resume continues a jsonl --output file")
    if output.exists() and not (c.resume or c.overwrite):
        raise ValueError(f"{output}: exists; pass --resume to continue it, or --overwrite to replace it")
    if output.exists() and c.input not in (None, "-") and Path(c.input).exists() and os.path.samefile(c.input, output):
        raise ValueError(f"{output}: is the input too; write the output elsewhere")
    if output.exists() and not output.is_file() and (c.format != "jsonl" or c.resume):
        raise ValueError(f"{output}: not a regular file; --format {c.format} {'--resume ' if c.resume else ''}needs "
                         "one (an output is written beside it and renamed into place)")
    return output


def _run(artifact, c: EncodeConfig, source: Input, output: Path | None, progress) -> dict:
    from m3rt import M3Runtime

    outputs = c.outputs
    with M3Runtime(artifact, backend=c.backend, progress=progress) as rt:
        max_length = rt.check_max_length(c.max_length if c.max_length is not None else rt.passage_max_length)
        settings = _settings(rt, c, outputs, max_length)
        items = source.items()
        digest = InputDigest()
        done, record = 0, None
        if output is not None:
            for leftover in output.parent.glob(f".{output.name}.tmp-*"):  # of killed runs (we hold the lock)
                leftover.unlink(missing_ok=True)
        if output is not None and c.format == "jsonl":
            record = RunRecord(output, settings)
            if c.resume and output.exists():
                done, record = _resume(output, settings, items, digest)
        writer = _open_writer(c, rt, output, settings, record, done)
        # Replacing a file: its record describes it until the new one takes its name.
        live_record = record if not getattr(writer, "replaces", None) else None
        window: list = []

        def texts_of():
            for item in items:
                window.append(item)
                yield item.text

        written = cut = 0
        complete = False
        try:
            for enc in rt.iter_encode(texts_of(), batch_size=c.batch_size, max_length=max_length,
                                      chunk_size=c.chunk_size, **outputs.flags()):
                chunk = window[:len(enc)]
                del window[:len(enc)]
                writer.write(replace(enc, start=enc.start + done) if done else enc, chunk)
                written += len(enc)
                cut += int(enc.truncated.sum())
                if record is not None:  # after the rows are flushed: the output holds at least what it says
                    for item in chunk:
                        digest.add(item.text, item.id)
                    if live_record is not None:
                        live_record.add(digest)
            complete = True
        finally:
            writer.close(complete)
        if complete and record is not None and live_record is None:
            record.checkpoints = []
            record.add(digest)
    return {"texts": written, "skipped": done, "output": c.output, "cut": cut}


def _settings(rt, c: EncodeConfig, outputs: Outputs, max_length: int) -> dict:
    """What an output's rows depend on (a resumed run must not change any of it)."""
    return {"graph_sha256": rt.manifest.graph_sha256, "precision": rt.manifest.precision,
            "outputs": list(outputs.names), "max_length": max_length, "dims": rt.output_dims,
            "precision_digits": c.precision_digits, "sparse_tokens": c.sparse_tokens}


def _resume(output: Path, settings: dict, items, digest: InputDigest) -> tuple[int, RunRecord]:
    """Check `output` against its run record and this run's input; skip the input's texts it holds already
    (hashing them); returns (rows kept, the record). Nothing is written here."""
    record = RunRecord.load(output)
    if record is None:
        raise ValueError(f"{output}: no run record beside it (it was not written by m3rt encode, or by a version "
                         "before run records): its rows cannot be checked against this run; use --overwrite")
    differs = record.mismatch(settings)
    if differs is not None:
        raise ValueError(f"{output}: written with other settings ({differs}); resume with the same ones, or use "
                         "--overwrite")
    rows, _ = complete_rows(output)
    last = max((c[0] for c in record.checkpoints), default=0)
    if rows < last:
        raise ValueError(f"{output}: {rows} complete rows, fewer than the {last} its run record says were written "
                         "(cut by hand?); its rows cannot be checked against the input: use --overwrite")
    point = record.checkpoint_within(rows)
    for _ in range(rows):
        item = next(items, None)
        if item is None:
            raise ValueError(f"{output}: holds {rows} rows but the input has only {digest.rows} texts: not the input "
                             "it was written from")
        digest.add(item.text, item.id)
        if point is not None and digest.rows == point[0] and digest.hexdigest() != point[1]:
            raise ValueError(f"{output}: the input's first {point[0]} texts differ from those it was written from "
                             "(another input, or an edited one); resume with the same input, or use --overwrite")
    return rows, record


def _open_writer(c: EncodeConfig, rt, output: Path | None, settings: dict, record, done: int):
    decode = rt.tokenizer.decode_one if c.sparse_tokens else None
    if c.format == "npy":
        return NpyWriter(output, rt.output_dims["dense"])
    if c.format == "parquet":
        from m3rt.corpus.schema import settings_for

        table_settings = settings_for(rt.manifest, c.outputs, dense_dims=rt.output_dims["dense"],
                                      colbert_dims=rt.output_dims["colbert"], colbert_dtype="float32")
        return ParquetWriter(output, table_settings, decode)
    if output is None:
        return JsonlWriter(_Unclosed(sys.stdout), c.precision_digits, decode)
    if done:
        _, keep = complete_rows(output)
        with open(output, "rb+") as f:
            f.truncate(keep)  # a torn last line, left by an interrupted write
        record.save()
        return JsonlWriter(open(output, "a", encoding="utf-8"), c.precision_digits, decode)
    record.checkpoints = []
    if output.is_file():  # --overwrite: the new rows beside it, renamed onto it when complete
        return JsonlWriter.replacing(output, c.precision_digits, decode)
    record.save()
    return JsonlWriter(open(output, "w", encoding="utf-8"), c.precision_digits, decode)


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
