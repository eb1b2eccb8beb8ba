"""Prometheus metrics of the server, in a registry of its own, names prefixed m3rt_."""

from __future__ import annotations


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("m3rt_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.errors = Counter("m3rt_errors", "HTTP requests answered 4xx or 5xx, by route", ["route"], registry=r)
        self.latency = Histogram("m3rt_request_seconds", "request latency by route", ["route"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.queue_depth = Gauge("m3rt_queue_tokens", "tokens waiting for the engine", registry=r)
        self.held_bytes = Gauge("m3rt_held_bytes", "bytes held by requests in flight (the --max-response-bytes "
                                "budget)", registry=r)
        self.batch_requests = Histogram("m3rt_batch_requests", "requests merged into one runtime call", registry=r,
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.batch_texts = Histogram("m3rt_batch_texts", "texts per runtime call", registry=r,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.batch_tokens = Histogram("m3rt_batch_tokens", "tokens per runtime call", registry=r,
                                      buckets=(16, 64, 256, 1024, 4096, 16384, 65536))
        self.tokens = Counter("m3rt_tokens", "tokens encoded", registry=r)
        self.engine_seconds = Counter("m3rt_engine_seconds", "seconds spent in runtime calls", registry=r)
        self.dropped = Counter("m3rt_dropped_requests", "requests whose client left before their turn", registry=r)
        self.tokens_per_s = Gauge("m3rt_tokens_per_second", "tokens/s of the last runtime call", registry=r)

    def request(self, path: str, status: int, seconds: float) -> None:
        route = path if path in KNOWN_ROUTES else "other"
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(route).inc()

    def watch(self, queued_tokens, held_bytes) -> None:
        """The gauges read these callables when scraped."""
        self.queue_depth.set_function(queued_tokens)
        self.held_bytes.set_function(held_bytes)

    def batch(self, requests: int, texts: int, tokens: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.tokens.inc(tokens)
        self.engine_seconds.inc(seconds)
        if seconds > 0:
            self.tokens_per_s.set(tokens / seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# Label values are bounded: unknown paths (scanners, typos) count as "other".
KNOWN_ROUTES = {"/", "/invocations", "/embed", "/embed_sparse", "/rerank", "/tokenize", "/health", "/info",
                "/v1/embeddings", "/v1/models", "/encode", "/score", "/metrics", "/docs", "/openapi.json"}
