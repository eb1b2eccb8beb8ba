"""`m3rt serve --ray-address`: the m3rt serve app (m3rt/serve/app.py) as a Ray Serve deployment, one runtime
per replica, replicas behind Ray Serve's HTTP proxy. Each replica answers with its own dynamic batcher; Ray
Serve routes requests among replicas and, with autoscaling settings, adds and removes them."""

from __future__ import annotations

from dataclasses import asdict


class M3Replica:
    """One replica: the artifact's runtime and the FastAPI app of `m3rt serve`, called as an ASGI app."""

    def __init__(self, artifact: str, settings: dict, runtime_options: dict):
        from m3rt import M3Runtime
        from m3rt.ray.data import resolve_artifact
        from m3rt.serve.app import ServeSettings, create_app

        self.runtime = M3Runtime(resolve_artifact(artifact), **runtime_options)
        self.app = create_app(self.runtime, ServeSettings(**settings))

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
        batcher = getattr(getattr(getattr(self, "app", None), "state", None), "batcher", None)
        if batcher is not None:
            batcher.close()
        if getattr(self, "runtime", None) is not None:
            self.runtime.close()


def deploy(artifact: str, *, ray_address: str | None = None, replicas: int = 1, host: str = "127.0.0.1",
           port: int = 8000, autoscaling: dict | None = None, num_cpus: float = 1, settings=None,
           runtime_options: dict | None = None, name: str = "m3rt"):
    """Start (or join) Ray, run the deployment with `replicas` replicas (or Ray Serve's autoscaling_config
    `autoscaling`, passed through) on host:port, and return its handle; serve.shutdown() stops it."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ImportError("m3rt serve --ray-address needs the ray extra: pip install 'm3rt[ray]'") from None
    from m3rt.serve.app import ServeSettings

    if not ray.is_initialized():
        ray.init(address=None if ray_address in (None, "local") else ray_address, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    options = {"ray_actor_options": {"num_cpus": num_cpus}}
    if autoscaling:
        options["autoscaling_config"] = dict(autoscaling)
    else:
        options["num_replicas"] = int(replicas)
    app = serve.deployment(M3Replica, name=name, **options).bind(
        str(artifact), asdict(settings or ServeSettings()), dict(runtime_options or {}))
    return serve.run(app, name=name, route_prefix="/")
