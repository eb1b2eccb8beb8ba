"""ServeConfig: every setting of `m3rt serve` / serve() / create_app, its default written once here (the CLI is
generated from these fields)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields

from m3rt.options import option

# Where the API key is read from when --api-key is not given (so that it stays out of `ps` and shell history).
API_KEY_ENV = "M3RT_API_KEY"


@dataclass(frozen=True, repr=False)
class ServeConfig:
    host: str = option("127.0.0.1", "address to listen on")
    port: int = option(8080, "TCP port to listen on (1-65535)")
    backend: str = option("auto", "auto, cpu, cuda, onnxruntime-tensorrt, tensorrt")
    max_batch_tokens: int | None = option(None, "padded tokens per engine call", default_help="the backend's own")
    max_wait_ms: float = option(5.0, "how long a request waits for others to share its runtime call (ms)")
    max_batch_texts: int = option(256, "texts merged into one runtime call at most")
    max_queue_tokens: int = option(1 << 18, "tokens waiting for the engine at most (counted after tokenizing, as "
                                            "text-embeddings-inference does); past it requests get 429 with "
                                            "Retry-After")
    workers: int = option(1, "threads running runtime calls")
    max_texts_per_request: int = option(1024, "texts in one request at most (413 past it, and for a body of more "
                                              "than 4 JSON values per text, before it is parsed)")
    max_body_bytes: int = option(8 << 20, "bytes in one request body at most (413 past it)")
    max_response_bytes: int = option(256 << 20, "bytes that requests in flight may hold at once: their bodies, "
                                                "arrays and responses. A request that alone would pass it gets 413 "
                                                "before any work, one that would pass it while others hold it 429")
    graceful_timeout: float = option(30.0, "on SIGTERM: seconds in-flight requests get to finish; what is still "
                                           "running then is answered 503 JSON and the process exits")
    timeout_keep_alive: float = option(5.0, "seconds an idle connection stays open (before its first request and "
                                            "between requests)")
    timeout_headers: float = option(10.0, "seconds a request's headers may take from its first byte (408 past it)")
    timeout_body: float = option(30.0, "seconds a request's body may take after its headers (408 past it)")
    timeout_send: float = option(30.0, "seconds a response may wait for a client that does not read it (the "
                                       "connection is closed past it)")
    max_header_bytes: int = option(32 << 10, "bytes of a request's line and headers at most (431 past it)")
    limit_concurrency: int = option(1024, "connections at once; past it the one idle longest is closed to make room, "
                                          "and with none idle (each has a request in progress) a new one gets 503 "
                                          "JSON and is closed")
    api_key: str | None = option(None, "require 'Authorization: Bearer KEY' on every route but /health "
                                       f"(default: ${API_KEY_ENV} when set, else no key)")
    cors_allow_origin: Sequence[str] = option((), "origins allowed to call from a browser, comma-separated, or * "
                                                  "(default: none, no CORS headers)")
    served_model_name: str | None = option(None, "the model name of the OpenAI routes (checked on /v1/embeddings, "
                                                 "listed by /v1/models)",
                                           default_help="the artifact's model name")
    default_prompt: str | None = option(None, "text put before every query (/rerank's query, /score's queries) "
                                              "and named prompt 'query' (prompt_name on /embed)",
                                        default_help="none")
    prompts: dict | None = option(None, 'named prompts for prompt_name as JSON, e.g. \'{"query": "query: "}\'')
    json_logs: bool = option(False, "logs as one JSON object per line (access log with request ids included)")
    metrics_port: int | None = option(None, "serve /metrics on this port of --host instead of the main one "
                                            "(without the API key)")
    ray_address: str | None = option(None, "serve on Ray Serve instead: local (a new local Ray), auto (the running "
                                           "cluster) or ray://host:port (pip install 'm3rt[ray]')")
    replicas: int = option(1, "with --ray-address: replicas")
    autoscaling: dict | None = option(None, 'with --ray-address: Ray Serve autoscaling_config as JSON, e.g. '
                                            '\'{"min_replicas": 1, "max_replicas": 8}\' (replaces --replicas)')
    log_level: str = option("info", "uvicorn's log level", cli=False)

    def __post_init__(self):
        from m3rt.runtime.config import as_int

        for name, minimum in (("port", 1), ("max_batch_texts", 1), ("max_queue_tokens", 1), ("workers", 1),
                              ("max_texts_per_request", 1), ("max_body_bytes", 1), ("max_response_bytes", 1),
                              ("max_header_bytes", 1024), ("limit_concurrency", 1), ("replicas", 1)):
            object.__setattr__(self, name, as_int(getattr(self, name), name, minimum))
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if value is not None and not 1 <= as_int(value, name, 1) <= 65535:
                raise ValueError(f"{name} must be 1..65535, got {value}")
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError(f"metrics_port must differ from port ({self.port})")
        if self.max_batch_tokens is not None:
            object.__setattr__(self, "max_batch_tokens", as_int(self.max_batch_tokens, "max_batch_tokens", 1))
        _number(self.max_wait_ms, "max_wait_ms", 0)
        for name in ("graceful_timeout", "timeout_keep_alive", "timeout_headers", "timeout_body", "timeout_send"):
            _number(getattr(self, name), name, 0.1)
        # A body is held as its bytes and as the texts parsed from it: both count against the in-flight budget.
        if 2 * self.max_body_bytes > self.max_response_bytes:
            raise ValueError(f"max_response_bytes ({self.max_response_bytes}) must be at least twice max_body_bytes "
                             f"({self.max_body_bytes}): a body is held as bytes and as text")
        if self.api_key is None and os.environ.get(API_KEY_ENV):
            object.__setattr__(self, "api_key", os.environ[API_KEY_ENV])
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ValueError("api_key must be a non-empty string")
        origins = self.cors_allow_origin
        if isinstance(origins, str):
            origins = [o.strip() for o in origins.split(",") if o.strip()]
        object.__setattr__(self, "cors_allow_origin", tuple(origins))
        for name in ("served_model_name", "default_prompt"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string")
        for name in ("prompts", "autoscaling"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    object.__setattr__(self, name, json.loads(value))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{name} is not valid JSON ({e})") from None
        if self.prompts is not None and not (isinstance(self.prompts, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.prompts.items())):
            raise ValueError('prompts must be a JSON object of names to texts, e.g. {"query": "query: "}')
        if self.autoscaling is not None and not isinstance(self.autoscaling, dict):
            raise ValueError("autoscaling must be a JSON object (Ray Serve's autoscaling_config)")

    def __repr__(self) -> str:  # the API key never reaches a log
        shown = {k: ("***" if k == "api_key" and v is not None else v) for k, v in self.as_dict().items()}
        return f"ServeConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _number(value, name: str, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < math.inf:
        raise ValueError(f"{name} must be a number >= {minimum:g}, got {value!r}")
