"""The HTTP app: TEI-compatible, OpenAI-compatible and M3-native routes over one M3Runtime.

create_app wires the parts: the context (context.py: batcher, admission, metrics), the routes (routes/), the
middleware (middleware.py: request ids, access log, API key, body limits, the byte budget; CORS) and one
error mapping (errors.py): every failure is JSON, TEI's shape or, under /v1, OpenAI's, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging

from m3rt.serve.config import ServeConfig
from m3rt.serve.errors import Kind, ServeError, error_body

log = logging.getLogger("m3rt.serve")

# HTTP statuses raised by starlette or the middleware, as the server's kinds.
HTTP_KINDS = {400: Kind.BAD_REQUEST, 401: Kind.UNAUTHORIZED, 404: Kind.NOT_FOUND, 405: Kind.METHOD_NOT_ALLOWED,
              408: Kind.TIMEOUT, 413: Kind.TOO_LARGE, 429: Kind.OVERLOADED, 503: Kind.UNHEALTHY}


def create_app(runtime, settings: ServeConfig | None = None):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from m3rt.serve.context import ServeContext
    from m3rt.serve.middleware import Gate, Guard, JsonCORS
    from m3rt.serve.routes import ROUTERS, ops
    from m3rt.version import __version__

    settings = settings or ServeConfig()
    ctx = ServeContext(runtime, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # The server stopped accepting and drained (or cut) its requests: stop the workers without waiting on a
        # runtime call that is still running.
        app.state.workers_stopped = ctx.close(timeout=1.0)

    app = FastAPI(title="m3rt", description="BGE-M3's dense, sparse and ColBERT outputs in one call.",
                  version=__version__, lifespan=lifespan)
    app.state.m3rt = ctx
    app.state.batcher, app.state.runtime = ctx.batcher, runtime
    for router in ROUTERS:
        app.include_router(router)
    if settings.metrics_port is None:
        app.add_api_route("/metrics", ops.metrics, methods=["GET"], summary="Prometheus metrics (m3rt_*)")

    app.add_exception_handler(ServeError, answer_error)
    app.add_exception_handler(RequestValidationError, answer_invalid)
    app.add_exception_handler(HTTPException, answer_http)
    app.add_exception_handler(Exception, answer_unexpected)

    app.add_middleware(Gate, ctx=ctx)
    if settings.cors_allow_origin:
        app.add_middleware(JsonCORS, allow_origins=list(settings.cors_allow_origin), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Request-Id", "Retry-After"])
    app.add_middleware(Guard, ctx=ctx)
    return app


def json_error(request, error: ServeError):
    from starlette.responses import Response

    return Response(error_body(error, request.url.path), status_code=error.status, headers=error.headers,
                    media_type="application/json")


async def answer_error(request, exc: ServeError):
    return json_error(request, exc)


async def answer_invalid(request, exc):
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return json_error(request, ServeError(Kind.VALIDATION, f"{where or 'body'}: {first.get('msg', 'invalid request')}",
                                          param=where or None))


async def answer_http(request, exc):
    kind = HTTP_KINDS.get(exc.status_code)
    if kind is None:
        kind = Kind.BAD_REQUEST if exc.status_code < 500 else Kind.INTERNAL
    detail = str(exc.detail)
    if kind is Kind.NOT_FOUND:
        detail = f"no route {request.method} {request.url.path} (see /docs)"
    return json_error(request, ServeError(kind, detail, headers=getattr(exc, "headers", None)))


async def answer_unexpected(request, exc):  # a bug: still JSON, logged with the request's id
    rid = request.scope.get("state", {}).get("request_id", "-")
    log.error("request %s: %s %s failed", rid, request.method, request.url.path, exc_info=exc,
              extra={"request_id": rid})
    return json_error(request, ServeError(Kind.INTERNAL, f"internal error ({type(exc).__name__}); request id {rid}"))
