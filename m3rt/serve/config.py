"""ServeConfig: every setting of `m3rt serve` / serve() / create_app, its default written once here (the CLI is
generated from these fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from m3rt.options import option


@dataclass(frozen=True)
class ServeConfig:
    host: str = option("127.0.0.1", "address to listen on")
    port: int = option(8080, "TCP port to listen on (1-65535)")
    backend: str = option("auto", "auto, cpu, cuda, onnxruntime-tensorrt, tensorrt")
    max_batch_tokens: int | None = option(None, "padded tokens per engine call", default_help="the backend's own")
    max_wait_ms: float = option(5.0, "how long a request waits for others to share its runtime call (ms)")
    max_batch_texts: int = option(256, "texts merged into one runtime call at most")
    max_queue: int = option(4096, "texts waiting at most; past it requests get 429 with Retry-After")
    workers: int = option(1, "threads running runtime calls")
    max_texts_per_request: int = option(1024, "texts in one request at most (413 past it)")
    max_body_bytes: int = option(8 << 20, "bytes in one request body at most (413 past it)")
    ray_address: str | None = option(None, "serve on Ray Serve instead: local (a new local Ray), auto (the running "
                                           "cluster) or ray://host:port (pip install 'm3rt[ray]')")
    replicas: int = option(1, "with --ray-address: replicas")
    autoscaling: dict | None = option(None, 'with --ray-address: Ray Serve autoscaling_config as JSON, e.g. '
                                            '\'{"min_replicas": 1, "max_replicas": 8}\' (replaces --replicas)')
    log_level: str = option("info", "uvicorn's log level", cli=False)

    def __post_init__(self):
        from m3rt.runtime.config import as_int

        for name, minimum in (("port", 1), ("max_batch_texts", 1), ("max_queue", 1), ("workers", 1),
                              ("max_texts_per_request", 1), ("max_body_bytes", 1), ("replicas", 1)):
            object.__setattr__(self, name, as_int(getattr(self, name), name, minimum))
        if self.port > 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.max_batch_tokens is not None:
            object.__setattr__(self, "max_batch_tokens", as_int(self.max_batch_tokens, "max_batch_tokens", 1))
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait < float("inf"):
            raise ValueError(f"max_wait_ms must be a number >= 0, got {wait!r}")
        if isinstance(self.autoscaling, str):
            try:
                object.__setattr__(self, "autoscaling", json.loads(self.autoscaling))
            except json.JSONDecodeError as e:
                raise ValueError(f"autoscaling is not valid JSON ({e})") from None
        if self.autoscaling is not None and not isinstance(self.autoscaling, dict):
            raise ValueError("autoscaling must be a JSON object (Ray Serve's autoscaling_config)")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
