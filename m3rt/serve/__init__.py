"""`m3rt serve`: BGE-M3's three outputs over HTTP (FastAPI + uvicorn, the `serve` extra), with dynamic
batching, admission in tokens and bytes, and Prometheus metrics. `serve()` is what the CLI runs: on uvicorn in
this process, or on Ray Serve (ray_serve.py); `create_app` builds the app for any ASGI server."""

from __future__ import annotations

from pathlib import Path

from m3rt.serve.config import ServeConfig

__all__ = ["serve", "ServeConfig"]

# uvicorn cancels what is left this long after the drain deadline: time for the 503s to be written.
CUT_MARGIN_S = 3


def serve(artifact: str | Path, config: ServeConfig | None = None, **options) -> None:
    """Load the artifact and serve it until SIGINT / SIGTERM: in-flight requests get config.graceful_timeout
    seconds to finish, what is still running then gets a 503 JSON answer, and the process exits (status 0 on
    SIGTERM). `options`: ServeConfig's fields. With ray_address: the same app as a Ray Serve deployment of
    `replicas` replicas (or `autoscaling`, Ray Serve's autoscaling_config), until SIGINT / SIGTERM."""
    from dataclasses import replace

    config = replace(config or ServeConfig(), **options)
    if config.ray_address is not None:
        return _serve_on_ray(artifact, config)
    try:
        import uvicorn
    except ImportError:
        raise ImportError("m3rt serve needs the serve extra: pip install 'm3rt[serve]'") from None
    import signal
    import threading

    from m3rt import M3Runtime
    from m3rt.serve.app import create_app
    from m3rt.serve.logs import log_config
    from m3rt.serve.protocol import base_protocol, guarded

    import logging.config

    logging.config.dictConfig(log_config(config.json_logs, config.log_level))  # before the runtime logs anything
    for port, flag in ((config.port, "--port"), (config.metrics_port, "--metrics-port")):
        if port is not None:
            check_can_listen(config.host, port, flag)  # before the model loads; uvicorn would say it in a log line
    _raise_open_files_limit(config.limit_concurrency)
    runtime = M3Runtime(artifact, backend=config.backend, max_batch_tokens=config.max_batch_tokens)
    app = create_app(runtime, config)
    ctx = app.state.m3rt
    uv = uvicorn.Config(
        app, host=config.host, port=config.port, log_level=config.log_level,
        log_config=None, access_log=False,
        http=guarded(base_protocol(), config), h11_max_incomplete_event_size=config.max_header_bytes,
        # The guard keeps connections within the limit (protocol.py); uvicorn's own check, which also counts those
        # being closed, is a backstop well past it.
        limit_concurrency=2 * config.limit_concurrency + 1, timeout_keep_alive=config.timeout_keep_alive,
        timeout_graceful_shutdown=config.graceful_timeout + CUT_MARGIN_S)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            ctx.start_drain()  # requests past the deadline get 503 JSON (admission.py)
            super().handle_exit(sig, frame)

    metrics_server = _serve_metrics(ctx, config) if config.metrics_port is not None else None
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler it found: a no-op
    # one, so that a graceful stop (what Kubernetes sends) ends with exit status 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        Server(uv).run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        if getattr(app.state, "workers_stopped", True):
            runtime.close()  # else a runtime call still runs on a worker: the process exit ends it
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _serve_metrics(ctx, config: ServeConfig):
    """/metrics on its own port (prometheus_client's server, a thread of its own), without the API key."""
    from prometheus_client import start_http_server

    server, _ = start_http_server(config.metrics_port, addr=config.host, registry=ctx.metrics.registry)
    return server


def check_can_listen(host: str, port: int, flag: str = "--port") -> None:
    """Bind `port` on every address of `host`, as the server will, and let go; an OSError naming both if not."""
    import socket

    try:
        addresses = {a[:2] + a[4:] for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)}
        for family, kind, address in addresses:
            with socket.socket(family, kind) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server sets it
                sock.bind(address)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} (--host, {flag}): {e.strerror or e}") from None


def _raise_open_files_limit(connections: int) -> None:
    """Room for `connections` sockets and the files the process has: the soft limit raised toward the hard one."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


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
