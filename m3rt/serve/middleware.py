"""Plain ASGI middleware (not BaseHTTPMiddleware, under which handlers cannot see a client leave).

Outer (`Guard`): every request gets an id (X-Request-Id echoed when sane, else made), is counted and timed,
and logged once when done (the access log); a response a client does not read for --timeout-send is cut.
CORS (starlette's, with --cors-allow-origin) sits between, so that preflights need no key.
Inner (`Gate`): the API key; 503 while draining; the body's limits (Content-Length over the limit is 413
before a byte is read, a chunked body is counted as it comes), its deadline (408) and its hold on the
in-flight byte budget; what the request held is given back when its response is sent, and memory is trimmed
after big ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from m3rt.serve import memory
from m3rt.serve.admission import HOLDING, Holding
from m3rt.serve.errors import Kind, ServeError, error_body, send_error
from m3rt.serve.schemas import MAX_TEXTS

access_log = logging.getLogger("m3rt.serve.access")
log = logging.getLogger("m3rt.serve")

# A client's request id is kept when it is this short and plain (it is logged and echoed).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# A body is held twice against the budget: its bytes, and the text parsed from them.
BODY_COPIES = 2
# After a request that held this many bytes (its body counted twice), free memory is given back to the system.
TRIM_AFTER_BYTES = 8 << 20
# Paths open without the API key (load balancers and orchestrators probe them).
OPEN_PATHS = {"/health"}


class Guard:
    def __init__(self, app, ctx):
        self.app, self.ctx = app, ctx
        self.timeout_send = ctx.settings.timeout_send

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status, sent = [0], [0]

        async def send_marked(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
                return await send(message)
            sent[0] += len(message.get("body", b""))
            try:
                async with asyncio.timeout(self.timeout_send):
                    await send(message)
            except TimeoutError:
                raise SendTimeout() from None

        try:
            await self.app(scope, receive, send_marked)
        except SendTimeout:
            log.warning("request %s: the client read nothing for %g s; connection closed", rid, self.timeout_send)
        except asyncio.CancelledError:  # uvicorn cut the request (past the drain): JSON, not its text/plain 500
            if not status[0]:
                status[0] = Kind.SHUTTING_DOWN.value.status
                error = ServeError(Kind.SHUTTING_DOWN, "the server is shutting down and this request did not finish "
                                                       "within its drain time (--graceful-timeout); retry",
                                   headers={"Connection": "close"})
                with contextlib.suppress(Exception):
                    await send_error(send, error, scope["path"])
            raise
        finally:
            seconds = time.perf_counter() - started
            self.ctx.metrics.request(scope["path"], status[0] or 500, seconds)
            access_log.info('%s "%s %s" %d %.1f ms %d B id=%s', _client(scope), scope["method"], scope["path"],
                            status[0], seconds * 1e3, sent[0], rid,
                            extra={"request_id": rid, "method": scope["method"], "path": scope["path"],
                                   "status": status[0], "ms": round(seconds * 1e3, 2), "bytes_out": sent[0],
                                   "client": _client(scope)})


class SendTimeout(Exception):
    """The client stopped reading its response."""


class Gate:
    def __init__(self, app, ctx):
        self.app, self.ctx = app, ctx
        s = ctx.settings
        self.key = s.api_key.encode() if s.api_key else None
        self.max_body, self.timeout_body = s.max_body_bytes, s.timeout_body
        self.max_texts = s.max_texts_per_request

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        try:
            self._check(scope)
            holding = scope["state"][HOLDING] = Holding(self.ctx.budget)
            size = dict(scope["headers"]).get(b"content-length", b"")
            if size.isdigit():
                if int(size) > self.max_body:
                    raise ServeError(Kind.TOO_LARGE, f"body of {int(size)} bytes is over the limit of {self.max_body}"
                                                     " (--max-body-bytes)")
                holding.take(BODY_COPIES * int(size))
        except ServeError as e:
            return await send_error(send, e, path)
        limit = MAX_TEXTS.set(self.max_texts)  # lists are counted before their items are validated (schemas.py)
        try:
            await self.app(scope, self._receive(receive, holding, counted=not size.isdigit()), send)
        finally:
            MAX_TEXTS.reset(limit)
            peak = holding.peak
            holding.release()
            if peak >= TRIM_AFTER_BYTES:
                asyncio.get_running_loop().run_in_executor(None, memory.trim)

    def _check(self, scope) -> None:
        path = scope["path"]
        if self.key is not None and path not in OPEN_PATHS:
            auth = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                raise ServeError(Kind.UNAUTHORIZED, "a valid API key is needed: send 'Authorization: Bearer KEY'")
        if self.ctx.draining and path not in OPEN_PATHS:
            raise ServeError(Kind.SHUTTING_DOWN, "the server is shutting down; retry on another replica",
                             headers={"Connection": "close"})

    def _receive(self, receive, holding: Holding, counted: bool):
        """receive, within the body's deadline; a chunked body (no Content-Length to check first) is counted and
        held as it arrives. Raised here, an HTTPException reaches the app's handlers (errors.py's JSON)."""
        deadline = asyncio.get_running_loop().time() + self.timeout_body
        state = {"seen": 0, "done": False}

        async def bounded():
            if state["done"]:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.timeout_body:g} s "
                                         "(--timeout-body)", headers={"Connection": "close"}) from None
            if message["type"] != "http.request":
                return message
            state["done"] = not message.get("more_body", False)
            if counted:
                piece = len(message.get("body", b""))
                state["seen"] += piece
                if state["seen"] > self.max_body:
                    raise HTTPException(413, f"body is over the limit of {self.max_body} bytes (--max-body-bytes)")
                try:
                    holding.take(BODY_COPIES * piece)
                except ServeError as e:
                    raise HTTPException(e.status, e.message, headers=e.headers) from None
            return message

        return bounded


def _client(scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class JsonCORS(CORSMiddleware):
    """starlette's CORS, its refused preflights answered in JSON like every other error."""

    def preflight_response(self, request_headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        error = ServeError(Kind.BAD_REQUEST, f"CORS preflight refused: {response.body.decode()}")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return Response(error_body(error, ""), status_code=400, headers=headers, media_type="application/json")
