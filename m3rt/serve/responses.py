"""Response bodies written straight from the runtime's arrays, and what they cost before they are built.

A body is a list of JSON byte chunks (a block of rows each), built off the event loop when large and sent
chunk by chunk with its Content-Length; no pydantic model or jsonable_encoder walks millions of floats.
Floats are written as Python writes the float32 values (what a client parses back is exactly the runtime's
number). `Cost` estimates a response's bytes from its token counts, before the engine runs: the wire size
(an upper bound per float) plus the arrays held meanwhile; admission holds that many bytes of the budget.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
from starlette.responses import Response

from m3rt.serve.errors import Kind, ServeError

# Bytes of one float32 written as JSON, at most: "-1.2345678901234567e-05,".
FLOAT_JSON = 25
# One sparse entry: {"index":250001,"value":<float>}, or "250001":<float>, and a decoded token in lexical_tokens.
SPARSE_ENTRY_JSON = 48
TOKEN_TEXT_JSON = 64
# One /tokenize entry: {"id":250001,"text":"...","special":false}, a typical token's text included.
TOKEN_JSON = 56
# Rows per JSON chunk: chunks of about a megabyte for bge-m3's widths.
ROWS_PER_CHUNK = 64
# Bodies estimated above this are built on a worker thread (smaller ones are cheaper to write in place).
BUILD_IN_THREAD_BYTES = 256 << 10


@dataclass(frozen=True)
class Cost:
    """A response's bytes: on the wire, and held in arrays while it is computed and written."""

    wire: int
    arrays: int = 0

    @property
    def total(self) -> int:
        return self.wire + self.arrays

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.wire + other.wire, self.arrays + other.arrays)


def encode_cost(texts: int, tokens: int, *, dense: int = 0, sparse: bool = False, colbert: int = 0,
                colbert_format: str = "float", sparse_tokens: bool = False) -> Cost:
    """`dense` / `colbert`: the widths returned (0: not asked for). ColBERT arrays are held twice at the end of a
    call (the batches' outputs and the packed copy)."""
    wire = arrays = 0
    if dense:
        wire += texts * (dense * FLOAT_JSON + 2)
        arrays += texts * dense * 4
    if sparse:
        wire += tokens * (SPARSE_ENTRY_JSON + (TOKEN_TEXT_JSON if sparse_tokens else 0))
        arrays += tokens * 12
    if colbert:
        vectors = max(tokens - texts, 0)
        per_vector = colbert * FLOAT_JSON if colbert_format == "float" else (colbert * 2 * 4 + 2) // 3
        wire += vectors * per_vector + texts * 8
        arrays += vectors * colbert * 4 * 2
    arrays += tokens * 8  # the token ids
    return Cost(wire + 64, arrays)


def too_large(cost: Cost, limit: int, hint: str, held: int = 0) -> ServeError:
    """`held`: what the request holds already (its body)."""
    besides = f" besides the {held} its request holds" if held else ""
    return ServeError(Kind.TOO_LARGE, f"this response would hold about {cost.total} bytes ({cost.wire} to send)"
                                      f"{besides}, over the server's limit of {limit} (--max-response-bytes); {hint}")


def dumps(value) -> bytes:
    """Compact JSON bytes; non-finite floats refused (JSON has none)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, still valid JSON
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as e:
        raise ServeError(Kind.BACKEND, f"the engine returned a value JSON cannot hold ({e})") from None


class Writer:
    """JSON chunks: pieces appended in order, cut into chunks of about a megabyte."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self._pieces: list[bytes] = []
        self._pending = 0
        self.size = 0

    def add(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._pending += len(piece)
        self.size += len(piece)
        if self._pending >= 1 << 20:
            self._flush()

    def array(self, items, write) -> None:
        """`[a,b,...]`, each item written by write(item)."""
        self.add(b"[")
        for i, item in enumerate(items):
            if i:
                self.add(b",")
            write(item)
        self.add(b"]")

    def rows(self, matrix: np.ndarray) -> None:
        """A float matrix as a JSON array of arrays, a block of rows per piece."""
        self.add(b"[")
        for lo in range(0, len(matrix), ROWS_PER_CHUNK):
            if lo:
                self.add(b",")
            self.add(dumps(matrix[lo:lo + ROWS_PER_CHUNK].tolist())[1:-1])
        self.add(b"]")

    def _flush(self) -> None:
        if self._pieces:
            self.chunks.append(b"".join(self._pieces))
            self._pieces, self._pending = [], 0

    def done(self) -> list[bytes]:
        self._flush()
        return self.chunks


def b64_fp16(rows: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(rows, dtype="<f2").tobytes()).decode()


def b64_fp32(row: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode()


# ------------------------------------------------------------------------------------------ bodies
def dense_body(dense: np.ndarray) -> list[bytes]:
    w = Writer()
    w.rows(dense)
    return w.done()


def sparse_tei_body(sparse) -> list[bytes]:
    w = Writer()

    def row(i):
        ids, weights = sparse.row(i)
        w.add(dumps([{"index": t, "value": v} for t, v in zip(ids.tolist(), weights.tolist())]))

    w.array(range(len(sparse)), row)
    return w.done()


def encode_body(enc, *, sparse_tokens: bool, colbert_format: str, decode) -> list[bytes]:
    """FlagEmbedding's keys: dense_vecs, lexical_weights ({token id: weight}), colbert_vecs (float rows, or
    base64 fp16 per text), and lexical_tokens ({token text: weight}) when asked for."""
    w = Writer()
    w.add(b'{"dense_vecs":')
    if enc.dense is None:
        w.add(b"null")
    else:
        w.rows(enc.dense)
    w.add(b',"lexical_weights":')
    if enc.sparse is None:
        w.add(b"null")
    else:
        def lexical(i):
            ids, weights = enc.sparse.row(i)
            w.add(dumps(dict(zip(map(str, ids.tolist()), weights.tolist()))))

        w.array(range(len(enc)), lexical)
    w.add(b',"colbert_vecs":')
    if enc.colbert is None:
        w.add(b"null")
    elif colbert_format == "base64_fp16":
        w.array(range(len(enc)), lambda i: w.add(dumps(b64_fp16(enc.colbert.row(i)))))
    else:
        w.array(range(len(enc)), lambda i: w.rows(enc.colbert.row(i)))
    if enc.sparse is not None and sparse_tokens:
        w.add(b',"lexical_tokens":')

        def tokens(i):
            ids, weights = enc.sparse.row(i)
            w.add(dumps({decode(t): v for t, v in zip(ids.tolist(), weights.tolist())}))

        w.array(range(len(enc)), tokens)
    w.add(b"}")
    return w.done()


def openai_body(dense: np.ndarray, *, encoding_format: str, model: str, tokens: int) -> list[bytes]:
    w = Writer()
    w.add(b'{"object":"list","data":')

    def item(i):
        vector = b64_fp32(dense[i]) if encoding_format == "base64" else dense[i].tolist()
        w.add(dumps({"object": "embedding", "index": i, "embedding": vector}))

    w.array(range(len(dense)), item)
    w.add(b',"model":' + dumps(model))
    w.add(b',"usage":' + dumps({"prompt_tokens": tokens, "total_tokens": tokens}) + b"}")
    return w.done()


def tokenize_body(rows: list[np.ndarray], *, specials: set[int], keep_specials: bool, decode,
                  limit: int) -> list[bytes]:
    """TEI's /tokenize answer; past `limit` bytes written, a 413 (token texts are only known once decoded)."""
    w = Writer()

    def row(ids):
        ids = ids.tolist() if keep_specials else [t for t in ids.tolist() if t not in specials]
        w.add(dumps([{"id": t, "text": decode(t), "special": t in specials} for t in ids]))
        if w.size > limit:
            raise ServeError(Kind.TOO_LARGE, f"the tokens of these inputs take more than {limit} bytes "
                                             "(--max-response-bytes); send fewer or shorter inputs")

    w.array(rows, row)
    return w.done()


class ChunkedJSON(Response):
    """JSON sent chunk by chunk with its Content-Length; each chunk is let go once written."""

    media_type = "application/json"

    def __init__(self, chunks: list[bytes], status_code: int = 200, headers: dict | None = None):
        self.chunks, self.status_code, self.background, self.body = chunks, status_code, None, b""
        self.init_headers(headers)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.raw_headers.append((b"content-length", str(sum(len(c) for c in chunks)).encode()))

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        chunks = self.chunks
        if not chunks:
            await send({"type": "http.response.body", "body": b""})
        for i in range(len(chunks)):
            chunk, chunks[i] = chunks[i], b""
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
