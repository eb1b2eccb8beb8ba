"""`m3rt serve`: BGE-M3's three outputs over HTTP (FastAPI + uvicorn, the `serve` extra), with dynamic
batching, bounded queues and Prometheus metrics. `serve()` is what the CLI runs; `create_app` builds the app
for any ASGI server."""

from __future__ import annotations

from pathlib import Path


def serve(artifact: str | Path, *, host: str = "127.0.0.1", port: int = 8080, backend: str = "auto",
          max_batch_tokens: int | None = None, max_wait_ms: float = 5.0, max_batch_texts: int = 256,
          max_queue: int = 4096, workers: int = 1, max_texts_per_request: int = 1024,
          max_body_bytes: int = 8 << 20, log_level: str = "info", ray_address: str | None = None,
          replicas: int = 1, autoscaling: dict | None = None) -> None:
    """Load the artifact and serve it until SIGINT / SIGTERM (in-flight requests finish first). With
    ray_address: the same app as a Ray Serve deployment of `replicas` replicas (or `autoscaling`, Ray Serve's
    autoscaling_config), until SIGINT / SIGTERM."""
    from m3rt.serve.app import ServeSettings

    settings = ServeSettings(max_wait_ms=max_wait_ms, max_batch_texts=max_batch_texts, max_queue_texts=max_queue,
                             workers=workers, max_texts_per_request=max_texts_per_request,
                             max_body_bytes=max_body_bytes)
    if ray_address is not None:
        return _serve_on_ray(artifact, ray_address, replicas, autoscaling, host, port, settings,
                             dict(backend=backend, max_batch_tokens=max_batch_tokens))
    try:
        import uvicorn
    except ImportError:
        raise ImportError("m3rt serve needs the serve extra: pip install 'm3rt[serve]'") from None
    from m3rt import M3Runtime
    from m3rt.serve.app import create_app

    runtime = M3Runtime(artifact, backend=backend, max_batch_tokens=max_batch_tokens)
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


def _serve_on_ray(artifact, ray_address, replicas, autoscaling, host, port, settings, runtime_options) -> None:
    import signal
    import threading

    from m3rt.ray.serve import deploy

    deploy(str(artifact), ray_address=ray_address, replicas=replicas, autoscaling=autoscaling, host=host, port=port,
           settings=settings, runtime_options=runtime_options)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        from ray import serve

        serve.shutdown()  # replicas finish what they hold, then go
        for s, handler in previous.items():
            signal.signal(s, handler)
