"""Where `m3rt encode` reads texts from: arguments, a file (a FIFO, a /dev/fd/N of process substitution), or
stdin; one text per line (a UTF-8 BOM dropped, CRLF and LF alike), JSONL (strings, or objects with a text field
and an optional id field), or a .json array of those. Every bad line is an error naming the file and the line.
The JSON lines reader is shared with embed-corpus's shards (shards.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


ENCODING_HINT = "; pass --encoding"


@dataclass(frozen=True)
class Item:
    text: str
    id: object = None


class Input:
    """An input opened (and so checked) before any work starts; `items()` reads it lazily, once."""

    def __init__(self, input: str | None = None, texts: Iterable[str] | None = None, *, jsonl: bool = False,
                 field: str = "text", id_field: str = "id", encoding: str = "utf-8"):
        self.texts, self.field, self.id_field, self.encoding = texts, field, id_field, encoding
        self.stream = None
        if texts:
            self.name = "<arguments>"
        elif input in (None, "-"):
            if sys.stdin.isatty():
                raise ValueError("no texts: pass them as arguments, --input FILE, or pipe them on stdin")
            self.name, self.stream = "<stdin>", sys.stdin.buffer
        else:
            self.name, self.stream = input, open_readable(input)
        self.json_array = self.name.endswith(".json")
        self.jsonl = jsonl or self.name.endswith(".jsonl")

    def items(self) -> Iterator[Item]:
        try:
            if self.texts:
                yield from (Item(t) for t in self.texts)
            elif self.json_array:
                yield from self._json_array()
            elif self.jsonl:
                for n, value in json_lines(self.stream, self.name, self.encoding, hint=ENCODING_HINT):
                    yield _item(value, f"{self.name}:{n}", self.field, self.id_field)
            else:
                yield from (Item(line) for _, line in text_lines(self.stream, self.name, self.encoding,
                                                                 hint=ENCODING_HINT))
        finally:
            self.close()

    def close(self) -> None:
        if self.stream is not None and self.stream is not sys.stdin.buffer:
            self.stream.close()

    def _json_array(self) -> Iterator[Item]:
        name = self.name
        raw = self.stream.read(MAX_JSON_ARRAY_BYTES + 1)
        if len(raw) > MAX_JSON_ARRAY_BYTES:
            raise ValueError(f"{name}: a JSON array over {MAX_JSON_ARRAY_BYTES >> 20} MiB is parsed whole; give it as "
                             "JSONL (one text or object per line, read as it goes)")
        try:
            data = json.loads(raw.decode(self.encoding).removeprefix("\ufeff"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not valid {self.encoding} ({e.reason} at byte {e.start}); pass --encoding") \
                from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: not valid JSON ({e.msg}, line {e.lineno})") from None
        except RecursionError:
            raise ValueError(f"{name}: JSON nested too deeply") from None
        if not isinstance(data, list):
            raise ValueError(f"{name}: expected a JSON array of strings or objects, got {type(data).__name__}")
        for i, value in enumerate(data):
            yield _item(value, f"{name}[{i}]", self.field, self.id_field)


def open_readable(input: str):
    """A file, FIFO or /dev/fd/N opened for reading, or a ValueError saying why it cannot be."""
    path = Path(input)
    if path.is_dir():
        raise ValueError(f"{input}: is a folder; give a file of texts (m3rt embed-corpus reads folders of shards)")
    if not path.exists():
        raise ValueError(f"{input}: no such file")
    try:
        return open(path, "rb")
    except OSError as e:
        raise ValueError(f"{input}: cannot be read ({e.strerror})") from None


def count_items(input: str | None, *, jsonl: bool = False) -> int | None:
    """How many texts a regular file holds (for a progress line's total); None for stdin, pipes and FIFOs
    (read once only) and JSON arrays."""
    if input in (None, "-") or input.endswith(".json") or not Path(input).is_file():
        return None
    with open(input, "rb") as f:
        if jsonl or input.endswith(".jsonl"):
            return sum(1 for line in f if line.strip())
        lines, last = 0, b"\n"
        while block := f.read(1 << 22):  # blocks, not lines: a 50 MB line costs no 50 MB object
            lines += block.count(b"\n")
            last = block[-1:]
        return lines + (last != b"\n")


# A line longer than this is refused (named by file and line), never read on: an input without line ends
# (/dev/zero, a binary file) would otherwise grow one line until memory runs out. Far more than max_length
# tokens of any text; what a line costs past the tokenizer's window is bounded anyway.
MAX_LINE_BYTES = 64 << 20
# A .json array is parsed whole: past this, JSONL (read line by line) is the format to use.
MAX_JSON_ARRAY_BYTES = 256 << 20


def text_lines(stream, name: str, encoding: str = "utf-8", first_line: int = 1,
               hint: str = "") -> Iterator[tuple[int, str]]:
    """(line number, line without its end of line) of a binary stream, the first line's BOM dropped; `hint`
    ends the error of a line that is not valid in the encoding. Encodings whose line end is not the byte
    b"\\n" (UTF-16, UTF-32) are decoded before the lines are split."""
    if not _ascii_line_ends(encoding):
        yield from _decoded_lines(stream, name, encoding, first_line, hint)
        return
    n = first_line - 1
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        n += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise ValueError(f"{name}:{n}: a line longer than {MAX_LINE_BYTES >> 20} MiB (no line end: a binary "
                             "file?); one text per line")
        end = len(raw) - raw.endswith(b"\n")  # the end of line cut before decoding: no second copy of a long line
        try:
            line = str(memoryview(raw)[:end], encoding)
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}:{n}: not valid {encoding} ({e.reason} at byte {e.start} of the line){hint}") \
                from None
        del raw
        if n == 1:
            line = line.removeprefix("\ufeff")
        yield n, line.removesuffix("\r")


def _ascii_line_ends(encoding: str) -> bool:
    return "\n".encode(encoding) == b"\n"


def _decoded_lines(stream, name: str, encoding: str, first_line: int, hint: str) -> Iterator[tuple[int, str]]:
    import io

    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    n = first_line - 1
    try:
        while line := text.readline(MAX_LINE_BYTES + 1):
            n += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
                raise ValueError(f"{name}:{n}: a line longer than {MAX_LINE_BYTES >> 20} Mi characters; one text "
                                 "per line")
            if n == 1:
                line = line.removeprefix("\ufeff")
            yield n, line.removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}:{n + 1}: not valid {encoding} ({e.reason}){hint}") from None
    finally:
        text.detach()


def check_encoding(encoding: str) -> str:
    """The encoding's name as Python knows it, or a ValueError naming it."""
    import codecs

    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise ValueError(f"unknown encoding {encoding!r} (e.g. utf-8, utf-16, latin-1, cp1252)") from None


def json_lines(stream, name: str, encoding: str = "utf-8", first_line: int = 1,
               hint: str = "") -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON value) of every non-blank line."""
    for n, line in text_lines(stream, name, encoding, first_line, hint):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}:{n}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise ValueError(f"{name}:{n}: JSON nested too deeply") from None


def _item(value, where: str, field: str, id_field: str) -> Item:
    if isinstance(value, str):
        return Item(value)
    if isinstance(value, dict) and isinstance(value.get(field), str):
        return Item(value[field], value.get(id_field))
    raise ValueError(f"{where}: expected a JSON string or an object with a string {field!r} field")
