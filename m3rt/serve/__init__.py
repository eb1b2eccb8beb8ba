"""`m3rt serve`: BGE-M3's three outputs over HTTP (FastAPI + uvicorn, the `serve` extra), with dynamic
batching, bounded queues and Prometheus metrics. `serve()` is what the CLI runs; `create_app` builds the app
for any ASGI server."""

from __future__ import annotations

from pathlib import Path


def serve(artifact: str | Path, *, host: str = "127.0.0.1", port: int = 8080, backend: str = "auto",
          max_batch_tokens: int | None = None, max_wait_ms: float = 5.0, max_batch_texts: int = 256,
          max_queue: int = 4096, workers: int = 1, max_texts_per_request: int = 1024,
          max_body_bytes: int = 8 << 20, log_level: str = "info") -> None:
    """Load the artifact and serve it until SIGINT / SIGTERM (in-flight requests finish first)."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("m3rt serve needs the serve extra: pip install 'm3rt[serve]'") from None
    from m3rt import M3Runtime
    from m3rt.serve.app import ServeSettings, create_app

    runtime = M3Runtime(artifact, backend=backend, max_batch_tokens=max_batch_tokens)
    settings = ServeSettings(max_wait_ms=max_wait_ms, max_batch_texts=max_batch_texts, max_queue_texts=max_queue,
                             workers=workers, max_texts_per_request=max_texts_per_request,
                             max_body_bytes=max_body_bytes)
    import signal
    import threading

    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler it found: a no-op
    # one, so that a graceful stop (what Kubernetes sends) ends with exit status 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        uvicorn.run(create_app(runtime, settings), host=host, port=port, log_level=log_level,
                    timeout_graceful_shutdown=30)
    finally:
        runtime.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
