"""The HTTP app: TEI-compatible, OpenAI-compatible and M3-native routes over one M3Runtime and a Batcher.

Every error is a JSON body {"error": ..., "error_type": ...} (as text-embeddings-inference answers): 413 for
requests past the limits, 422 for malformed ones, 429 with Retry-After when the queue is full, 424 when the
engine fails. Route handlers never run the engine on the event loop.
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the handlers' annotations,
# and those models are local to create_app.
import asyncio
import base64
import contextlib
import time
from typing import Literal, Union

import numpy as np

from m3rt.runtime.heads import cut
from m3rt.serve.config import ServeConfig
from m3rt.runtime.outputs import Outputs


def create_app(runtime, settings: ServeConfig | None = None):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from m3rt.serve.batcher import Batcher, Overloaded
    from m3rt.serve.metrics import Metrics

    settings = settings or ServeConfig()

    metrics = Metrics()
    batcher = Batcher(runtime, max_wait_ms=settings.max_wait_ms, max_batch_texts=settings.max_batch_texts,
                      max_queue_texts=settings.max_queue, workers=settings.workers, on_batch=metrics.batch)
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()  # the server stops accepting first; queued work finishes, then the workers stop

    app = FastAPI(title="m3rt", description="BGE-M3's dense, sparse and ColBERT outputs in one call.",
                  version=_version(), lifespan=lifespan)
    app.state.batcher, app.state.runtime = batcher, runtime

    class Failure(Exception):
        def __init__(self, status: int, message: str, kind: str, headers: dict | None = None):
            super().__init__(message)
            self.status, self.kind, self.headers = status, kind, headers

    def error(status: int, message: str, kind: str, headers=None):
        return JSONResponse({"error": message, "error_type": kind}, status_code=status, headers=headers)

    @app.exception_handler(Failure)
    async def _failure(request, exc: Failure):
        return error(exc.status, str(exc), exc.kind, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, f"{where or 'body'}: {first.get('msg', 'invalid request')}", "Validation")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        kind = {404: "NotFound", 413: "Validation"}.get(exc.status_code, "Http")
        return error(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):  # a bug: still JSON, and counted
        return error(500, f"internal error ({type(exc).__name__})", "Internal")

    class LimitsAndMetrics:
        """Plain ASGI (not BaseHTTPMiddleware, under which handlers cannot see a client leave): the body limit
        from Content-Length before anything is read, and each request counted and timed."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            started, status = time.perf_counter(), [500]

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            size = dict(scope["headers"]).get(b"content-length", b"")
            if size.isdigit() and int(size) > settings.max_body_bytes:
                response = error(413, f"body of {int(size)} bytes is over the limit of {settings.max_body_bytes}",
                                 "Validation")
                await response(scope, receive, send_status)
            else:
                await self.app(scope, _counted(receive), send_status)
            metrics.request(scope["path"], status[0], time.perf_counter() - started)

    def _counted(receive):
        """receive, refusing a body (chunked: no Content-Length to check first) once past the limit: memory
        stays bounded whatever a client streams. FastAPI passes the HTTPException on to the handler below."""
        seen = [0]

        async def counted():
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > settings.max_body_bytes:
                    raise HTTPException(413, f"body is over the limit of {settings.max_body_bytes} bytes")
            return message
        return counted

    app.add_middleware(LimitsAndMetrics)

    # ---------------------------------------------------------------------------------- helpers
    def texts_of(inputs, what: str = "inputs") -> list[str]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise Failure(422, f"{what}: empty", "Validation")
        if len(texts) > settings.max_texts_per_request:
            raise Failure(413, f"{what}: {len(texts)} texts, over the limit of {settings.max_texts_per_request} per "
                          "request", "Validation")
        return texts

    async def encode(request, texts: list[str], outputs, max_length: int | None = None, truncate: bool = True):
        try:
            max_length = runtime.check_max_length(max_length or runtime.passage_max_length)
        except ValueError as e:
            raise Failure(422, str(e), "Validation") from None
        try:
            future = batcher.submit(texts, max_length, outputs)
        except Overloaded as e:
            raise Failure(429, f"overloaded: {e}", "Overloaded", {"Retry-After": "1"}) from None
        metrics.queue(batcher.queued_texts)
        waiter = asyncio.wrap_future(future)
        while not (await asyncio.wait({waiter}, timeout=0.2))[0]:
            if await request.is_disconnected():  # nobody to answer: its texts leave the queue unencoded
                future.cancel()
                metrics.dropped.inc()
                raise Failure(499, "the client disconnected", "Cancelled")
        try:
            enc = waiter.result()
        except ValueError as e:
            raise Failure(422, str(e), "Validation") from None
        except Exception as e:  # noqa: BLE001 - the engine failed: the request gets why
            raise Failure(424, f"{type(e).__name__}: {e}", "Backend") from None
        if not truncate and enc.truncated.any():
            i = int(np.flatnonzero(enc.truncated)[0])
            raise Failure(413, f"inputs[{i}] is longer than max_length={max_length} tokens and truncate is false",
                          "Validation")
        return enc

    def floats(values: np.ndarray) -> list:
        return values.tolist()

    Inputs = Union[str, list[str]]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    # ---------------------------------------------------------------------------------- TEI
    class EmbedRequest(Strict):
        inputs: Inputs
        normalize: bool = True
        truncate: bool = True
        truncation_direction: Literal["right"] = "right"
        prompt_name: str | None = None
        dimensions: int | None = Field(default=None, ge=1)

    @app.post("/embed", summary="TEI: dense vectors")
    async def embed(req: EmbedRequest, request: Request) -> list[list[float]]:
        if not req.normalize:
            raise Failure(422, "normalize=false: the artifact gives unit vectors only", "Validation")
        enc = await encode(request, texts_of(req.inputs), Outputs(dense=True), truncate=req.truncate)
        return floats(dense_of(enc, req.dimensions))

    class SparseValue(BaseModel):
        index: int
        value: float

    @app.post("/embed_sparse", summary="TEI: sparse lexical weights, one entry per token id")
    async def embed_sparse(req: EmbedRequest, request: Request) -> list[list[SparseValue]]:
        enc = await encode(request, texts_of(req.inputs), Outputs(sparse=True), truncate=req.truncate)
        return [[{"index": int(t), "value": float(w)} for t, w in zip(*enc.sparse.row(i))] for i in range(len(enc))]

    class RerankRequest(Strict):
        query: str
        texts: list[str]
        return_text: bool = False
        raw_scores: bool = False
        truncate: bool = True

    class Rank(BaseModel):
        index: int
        score: float
        text: str | None = None

    @app.post("/rerank", summary="TEI: texts ranked by ColBERT MaxSim against the query, best first",
              response_model_exclude_none=True)
    async def rerank(req: RerankRequest, request: Request) -> list[Rank]:
        from m3rt.kernels import rerank as maxsim_rerank

        texts = texts_of(req.texts, "texts")
        q = await encode(request, [req.query], Outputs(colbert=True), runtime.query_max_length, req.truncate)
        docs = await encode(request, texts, Outputs(colbert=True), truncate=req.truncate)
        idx, scores = await asyncio.get_running_loop().run_in_executor(
            None, maxsim_rerank, q.colbert.row(0), docs.colbert.vectors, docs.colbert.offsets, len(texts))
        return [Rank(index=int(i), score=float(s), text=texts[int(i)] if req.return_text else None)
                for i, s in zip(idx, scores)]

    class TokenizeRequest(Strict):
        inputs: Inputs
        add_special_tokens: bool = True

    class Token(BaseModel):
        id: int
        text: str
        special: bool

    @app.post("/tokenize", summary="TEI: the tokens each input is read as")
    async def tokenize(req: TokenizeRequest) -> list[list[Token]]:
        texts = texts_of(req.inputs)
        rows = runtime.tokenizer.encode(texts, runtime.manifest.max_length)
        specials = set(runtime.manifest.special_ids.values())
        out = []
        for row in rows:
            ids = row.tolist() if req.add_special_tokens else [t for t in row.tolist() if t not in specials]
            out.append([Token(id=t, text=runtime.tokenizer.decode_one(t), special=t in specials) for t in ids])
        return out

    @app.get("/health", summary="200 when the engine is loaded")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info", summary="the artifact, the engine and the limits")
    async def info() -> dict:
        m = runtime.manifest
        return {"model_id": m.source, "precision": m.precision, "backend": runtime.engine.name,
                "dims": {k: v for k, v in vars(m.dims).items() if v is not None}, "max_input_length": m.max_length, "max_length_default": runtime.passage_max_length,
                "max_batch_texts": settings.max_batch_texts, "max_queue_texts": settings.max_queue,
                "max_client_batch_size": settings.max_texts_per_request, "version": _version()}

    # ---------------------------------------------------------------------------------- OpenAI
    class OpenAIRequest(Strict):
        input: Inputs
        model: str | None = None
        encoding_format: Literal["float", "base64"] = "float"
        dimensions: int | None = Field(default=None, ge=1)
        user: str | None = None

    @app.post("/v1/embeddings", summary="OpenAI: dense vectors")
    async def openai_embeddings(req: OpenAIRequest, request: Request) -> dict:
        enc = await encode(request, texts_of(req.input, "input"), Outputs(dense=True))
        data = []
        for i, v in enumerate(dense_of(enc, req.dimensions)):
            value = (base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()
                     if req.encoding_format == "base64" else floats(v))
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = int(enc.lengths.sum())
        return {"object": "list", "data": data, "model": req.model or runtime.manifest.source,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # ---------------------------------------------------------------------------------- M3-native
    class EncodeRequest(Strict):
        inputs: Inputs
        return_dense: bool = True
        return_sparse: bool = False
        return_colbert_vecs: bool = False
        max_length: int | None = None
        sparse_tokens: bool = False
        colbert_format: Literal["float", "base64_fp16"] = "float"

    @app.post("/encode", summary="M3: dense, sparse and ColBERT in one call (FlagEmbedding's keys)")
    async def encode_route(req: EncodeRequest, request: Request) -> dict:
        try:
            outputs = Outputs(req.return_dense, req.return_sparse, req.return_colbert_vecs)
        except ValueError as e:
            raise Failure(422, str(e), "Validation") from None
        enc = await encode(request, texts_of(req.inputs), outputs, req.max_length)
        out: dict = {"dense_vecs": floats(enc.dense) if enc.dense is not None else None,
                     "lexical_weights": None, "colbert_vecs": None}
        if enc.sparse is not None:
            out["lexical_weights"] = [{str(t): float(w) for t, w in zip(*enc.sparse.row(i))} for i in range(len(enc))]
            if req.sparse_tokens:
                out["lexical_tokens"] = [{runtime.tokenizer.decode_one(int(t)): float(w)
                                          for t, w in zip(*enc.sparse.row(i))} for i in range(len(enc))]
        if enc.colbert is not None:
            rows = enc.colbert.as_list()
            out["colbert_vecs"] = ([base64.b64encode(r.astype("<f2").tobytes()).decode() for r in rows]
                                   if req.colbert_format == "base64_fp16" else [floats(r) for r in rows])
        return out

    class ScoreRequest(Strict):
        pairs: list[tuple[str, str]]
        weights_for_different_modes: list[float] | None = None
        max_query_length: int | None = None
        max_passage_length: int | None = None

    @app.post("/score", summary="M3: compute_score of (query, passage) pairs")
    async def score(req: ScoreRequest) -> dict:
        if not req.pairs:
            raise Failure(422, "pairs: empty", "Validation")
        if len(req.pairs) > settings.max_texts_per_request:
            raise Failure(413, f"pairs: {len(req.pairs)}, over the limit of {settings.max_texts_per_request}",
                          "Validation")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: runtime.compute_score([tuple(p) for p in req.pairs],
                                                    max_query_length=req.max_query_length,
                                                    max_passage_length=req.max_passage_length,
                                                    weights_for_different_modes=req.weights_for_different_modes))
        except (ValueError, TypeError) as e:
            raise Failure(422, str(e), "Validation") from None

    @app.get("/metrics", summary="Prometheus metrics (m3rt_*)")
    async def metrics_route():
        body, content_type = metrics.render(batcher.queued_texts)
        return Response(body, media_type=content_type)

    return app


def dense_of(enc, dimensions: int | None) -> np.ndarray:
    """The dense vectors, cut to `dimensions` and re-normalised as the runtime's truncate_dim does."""
    return cut(enc.dense, dimensions)


def _version() -> str:
    from m3rt.version import __version__

    return __version__
