"""OpenAI's routes: /v1/embeddings and /v1/models (errors here take OpenAI's shape: errors.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from m3rt.runtime.outputs import Outputs
from m3rt.serve import responses
from m3rt.serve.bodies import JSONRoute
from m3rt.serve.routes.common import answer, check_dimensions, context, dense_of, encode
from m3rt.serve.schemas import OpenAIEmbeddings, OpenAIModel, OpenAIModels, OpenAIRequest

router = APIRouter(route_class=JSONRoute)


@router.post("/v1/embeddings", summary="OpenAI: dense vectors", response_model=OpenAIEmbeddings)
async def embeddings(req: OpenAIRequest, request: Request):
    ctx = context(request)
    ctx.check_model(req.model)
    check_dimensions(ctx, req.dimensions)
    texts = ctx.admission.texts(req.input, "input")  # token ids: refused by the schema
    width = req.dimensions or ctx.runtime.output_dims["dense"]
    per_float = responses.FLOAT_JSON if req.encoding_format == "float" else 6
    enc = await encode(request, texts, max_length=ctx.runtime.passage_max_length, outputs=Outputs(dense=True),
                       what="input", hint="send fewer or shorter texts",
                       cost=lambda tok: responses.Cost(len(tok) * (width * per_float + 64), len(tok) * width * 4))
    dense = dense_of(enc, req.dimensions)
    tokens = int(enc.lengths.sum())
    return await answer(request, lambda: responses.openai_body(dense, encoding_format=req.encoding_format,
                                                               model=ctx.model_name, tokens=tokens),
                        len(texts) * width * per_float)


def model_entry(request) -> dict:
    ctx = context(request)
    return {"id": ctx.model_name, "object": "model", "created": ctx.created, "owned_by": "m3rt"}


@router.get("/v1/models", summary="OpenAI: the model this server serves", response_model=OpenAIModels)
async def models(request: Request):
    return {"object": "list", "data": [model_entry(request)]}


@router.get("/v1/models/{model:path}", summary="OpenAI: one model", response_model=OpenAIModel)
async def model(model: str, request: Request):
    context(request).check_model(model)
    return model_entry(request)
