"""Operations: /health (the engine answers), /info (the model and the limits, no machine paths) and /metrics
(Prometheus; on its own port instead with --metrics-port)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from m3rt.serve.routes.common import context
from m3rt.serve.schemas import Health

router = APIRouter()


@router.get("/health", summary="200 when the engine answers (a recent call, or a probe call now); 503 when it "
                               "does not or the server is shutting down", response_model=Health)
async def health(request: Request):
    return {"status": await context(request).check_health()}


@router.get("/info", summary="the model, the engine and the limits")
async def info(request: Request) -> dict:
    from m3rt.version import __version__

    ctx = context(request)
    rt, s, m = ctx.runtime, ctx.settings, ctx.runtime.manifest
    return {"model_id": ctx.model_name, "precision": m.precision, "backend": rt.engine.name,
            "dims": {k: v for k, v in vars(m.dims).items() if v is not None}, "output_dims": rt.output_dims,
            "max_input_length": m.max_length, "max_length_default": rt.passage_max_length,
            "query_max_length": rt.query_max_length, "max_batch_texts": s.max_batch_texts,
            "max_queue_tokens": s.max_queue_tokens, "max_client_batch_size": s.max_texts_per_request,
            "max_body_bytes": s.max_body_bytes, "max_response_bytes": s.max_response_bytes,
            "prompts": sorted(ctx.prompts), "auth": s.api_key is not None, "version": __version__}


async def metrics(request: Request):
    body, content_type = context(request).metrics.render()
    return Response(body, media_type=content_type)
