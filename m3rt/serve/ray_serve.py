"""`m3rt serve --ray-address` (the `ray` extra): the m3rt serve app (app.py) as a Ray Serve deployment, one runtime
per replica, replicas behind Ray Serve's HTTP proxy. Each replica answers with its own dynamic batcher; Ray
Serve routes requests among replicas and, with autoscaling settings, adds and removes them."""

from __future__ import annotations


class M3Replica:
    """One replica: the artifact's runtime and the FastAPI app of `m3rt serve`, called as an ASGI app."""

    def __init__(self, artifact: str, config: dict):
        from m3rt import M3Runtime
        from m3rt.artifact import resolve_artifact
        from m3rt.serve.app import create_app
        from m3rt.serve.config import ServeConfig

        config = ServeConfig(**config)
        self.runtime = M3Runtime(resolve_artifact(artifact), backend=config.backend,
                                 max_batch_tokens=config.max_batch_tokens)
        self.app = create_app(self.runtime, config)

    async def __call__(self, request):
        from starlette.responses import Response

        head: dict = {}
        body = bytearray()

        async def send(message):
            if message["type"] == "http.response.start":
                head["status"], head["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(request.scope, request.receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.get("headers", [])
                   if k.lower() != b"content-length"}
        return Response(bytes(body), status_code=head.get("status", 500), headers=headers)

    def __del__(self):
        ctx = getattr(getattr(getattr(self, "app", None), "state", None), "m3rt", None)
        stopped = ctx.close(timeout=30.0) if ctx is not None else True
        if stopped and getattr(self, "runtime", None) is not None:
            self.runtime.close()


def deploy(artifact: str, config=None, *, num_cpus: float = 1, name: str = "m3rt", **options):
    """Start (or join) Ray at config.ray_address, run the deployment with config.replicas replicas (or Ray
    Serve's autoscaling_config config.autoscaling, passed through) on config.host:port, and return its handle;
    serve.shutdown() stops it. `options`: ServeConfig's fields."""
    from dataclasses import replace

    from m3rt.serve.config import ServeConfig

    try:
        import ray
        from ray import serve
    except ImportError:
        raise ImportError("m3rt serve --ray-address needs the ray extra: pip install 'm3rt[ray]'") from None
    config = replace(config or ServeConfig(), **options)
    if not ray.is_initialized():
        ray.init(address=None if config.ray_address in (None, "local") else config.ray_address, log_to_driver=False)
    serve.start(http_options={"host": config.host, "port": config.port})
    deployment = {"ray_actor_options": {"num_cpus": num_cpus}}
    if config.autoscaling:
        deployment["autoscaling_config"] = dict(config.autoscaling)
    else:
        deployment["num_replicas"] = config.replicas
    app = serve.deployment(M3Replica, name=name, **deployment).bind(str(artifact), config.as_dict())
    return serve.run(app, name=name, route_prefix="/")
