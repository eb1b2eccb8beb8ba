"""The server's one error type and its one status mapping (as text-embeddings-inference's router has).

Every failure a client can see is a `ServeError` of a `Kind`; the kind gives the HTTP status and the names in
both body shapes: text-embeddings-inference's {"error", "error_type"} everywhere but the OpenAI routes, and
OpenAI's {"error": {"message", "type", "param", "code"}} under /v1 (the openai client shows that message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class KindInfo:
    status: int
    tei: str  # text-embeddings-inference's error_type
    openai: str  # OpenAI's error type
    code: str | None = None  # OpenAI's error code


class Kind(Enum):
    VALIDATION = KindInfo(422, "Validation", "invalid_request_error")
    BAD_REQUEST = KindInfo(400, "Validation", "invalid_request_error")
    TOO_LARGE = KindInfo(413, "Validation", "invalid_request_error", "request_too_large")
    HEADERS_TOO_LARGE = KindInfo(431, "Validation", "invalid_request_error", "headers_too_large")
    UNAUTHORIZED = KindInfo(401, "Unauthorized", "invalid_request_error", "invalid_api_key")
    NOT_FOUND = KindInfo(404, "NotFound", "invalid_request_error", "not_found")
    MODEL_NOT_FOUND = KindInfo(404, "NotFound", "invalid_request_error", "model_not_found")
    METHOD_NOT_ALLOWED = KindInfo(405, "MethodNotAllowed", "invalid_request_error", "method_not_allowed")
    TIMEOUT = KindInfo(408, "Timeout", "invalid_request_error", "timeout")
    OVERLOADED = KindInfo(429, "Overloaded", "rate_limit_error", "rate_limit_exceeded")
    CANCELLED = KindInfo(499, "Cancelled", "invalid_request_error", "client_closed_request")
    BACKEND = KindInfo(424, "Backend", "server_error", "backend_error")
    UNHEALTHY = KindInfo(503, "Unhealthy", "server_error", "unhealthy")
    SHUTTING_DOWN = KindInfo(503, "Unhealthy", "server_error", "shutting_down")
    INTERNAL = KindInfo(500, "Internal", "server_error", "internal_error")


class ServeError(Exception):
    """A failure answered to the client: its kind, a message that says what to change, and headers."""

    def __init__(self, kind: Kind, message: str, *, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.kind, self.message, self.param = kind, message, param
        self.headers = dict(headers or {})
        if kind is Kind.OVERLOADED:
            self.headers.setdefault("Retry-After", "1")
        if kind is Kind.UNAUTHORIZED:
            self.headers.setdefault("WWW-Authenticate", "Bearer")

    @property
    def status(self) -> int:
        return self.kind.value.status


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_body(error: ServeError, path: str) -> bytes:
    info = error.kind.value
    if is_openai_path(path):
        body = {"error": {"message": error.message, "type": info.openai, "param": error.param, "code": info.code}}
    else:
        body = {"error": error.message, "error_type": info.tei}
    return json.dumps(body).encode()  # ASCII: a lone surrogate from the request cannot break the answer


def raw_error(error: ServeError, path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Raw ASGI headers and body of an error answer (for code below the app: middleware, protocol)."""
    body = error_body(error, path)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in error.headers.items()]
    return headers, body


async def send_error(send, error: ServeError, path: str) -> None:
    """Answer `error` on an ASGI `send` whose response has not started."""
    headers, body = raw_error(error, path)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
