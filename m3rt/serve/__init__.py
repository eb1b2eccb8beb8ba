"""`m3rt serve`: BGE-M3's three outputs over HTTP (FastAPI + uvicorn, the `serve` extra), with dynamic
batching, bounded queues and Prometheus metrics. `serve()` is what the CLI runs: on uvicorn in this process, or
on Ray Serve (ray_serve.py); `create_app` builds the app for any ASGI server."""

from __future__ import annotations

from pathlib import Path

from m3rt.serve.config import ServeConfig

__all__ = ["serve", "ServeConfig"]


def serve(artifact: str | Path, config: ServeConfig | None = None, **options) -> None:
    """Load the artifact and serve it until SIGINT / SIGTERM (in-flight requests finish first). `options`:
    ServeConfig's fields. With ray_address: the same app as a Ray Serve deployment of `replicas` replicas (or
    `autoscaling`, Ray Serve's autoscaling_config), until SIGINT / SIGTERM."""
    from dataclasses import replace

    config = replace(config or ServeConfig(), **options)
    if config.ray_address is not None:
        return _serve_on_ray(artifact, config)
    try:
        import uvicorn
    except ImportError:
        raise ImportError("m3rt serve needs the serve extra: pip install 'm3rt[serve]'") from None
    from m3rt import M3Runtime
    from m3rt.serve.app import create_app

    runtime = M3Runtime(artifact, backend=config.backend, max_batch_tokens=config.max_batch_tokens)
    import signal
    import threading

    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler it found: a no-op
    # one, so that a graceful stop (what Kubernetes sends) ends with exit status 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        uvicorn.run(create_app(runtime, config), host=config.host, port=config.port, log_level=config.log_level,
                    timeout_graceful_shutdown=30)
    finally:
        runtime.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _serve_on_ray(artifact, config: ServeConfig) -> None:
    import signal
    import threading

    from m3rt.serve.ray_serve import deploy

    deploy(str(artifact), config=config)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        from ray import serve

        serve.shutdown()  # replicas finish what they hold, then go
        for s, handler in previous.items():
            signal.signal(s, handler)
