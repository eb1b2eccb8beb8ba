"""text-embeddings-inference's routes: /embed (also / and /invocations, as TEI serves an embedding model, which
is where huggingface_hub's InferenceClient posts), /embed_sparse, /rerank and /tokenize."""

from __future__ import annotations

from fastapi import APIRouter, Request

from m3rt.runtime.outputs import Outputs
from m3rt.runtime.pipeline import Tokenized
from m3rt.serve import responses
from m3rt.serve.bodies import JSONRoute
from m3rt.serve.errors import Kind, ServeError
from m3rt.serve.routes.common import (answer, check_dimensions, check_direction, check_whole, context, dense_of,
                                      encode, with_prompt)
from m3rt.serve.schemas import EmbedRequest, EmbedSparseRequest, Rank, RerankRequest, SparseValue, Token, \
    TokenizeRequest

router = APIRouter(route_class=JSONRoute)

FEWER = "send fewer or shorter texts"


async def embed(req: EmbedRequest, request: Request) -> list[list[float]]:
    ctx = context(request)
    if not req.normalize:
        raise ServeError(Kind.VALIDATION, "normalize=false: the artifact gives unit vectors only", param="normalize")
    check_direction(req.truncation_direction)
    check_dimensions(ctx, req.dimensions)
    texts = with_prompt(ctx, ctx.admission.texts(req.inputs), req.prompt_name)
    width = req.dimensions or ctx.runtime.output_dims["dense"]
    max_length = ctx.runtime.passage_max_length
    enc = await encode(request, texts, max_length=max_length, outputs=Outputs(dense=True), truncate=req.truncate,
                       cost=lambda tok: responses.encode_cost(len(tok), int(tok.lengths.sum()), dense=width),
                       hint=FEWER)
    dense = dense_of(enc, req.dimensions)
    return await answer(request, lambda: responses.dense_body(dense), len(texts) * width * responses.FLOAT_JSON)


router.add_api_route("/embed", embed, methods=["POST"], summary="TEI: dense vectors")
router.add_api_route("/", embed, methods=["POST"], summary="TEI: /embed, where TEI and huggingface_hub's "
                                                            "InferenceClient(model=URL) post")
router.add_api_route("/invocations", embed, methods=["POST"], summary="TEI (SageMaker): /embed")


@router.post("/embed_sparse", summary="TEI: sparse lexical weights, one entry per token id")
async def embed_sparse(req: EmbedSparseRequest, request: Request) -> list[list[SparseValue]]:
    ctx = context(request)
    check_direction(req.truncation_direction)
    texts = with_prompt(ctx, ctx.admission.texts(req.inputs), req.prompt_name)
    enc = await encode(request, texts, max_length=ctx.runtime.passage_max_length, outputs=Outputs(sparse=True),
                       truncate=req.truncate, hint=FEWER,
                       cost=lambda tok: responses.encode_cost(len(tok), int(tok.lengths.sum()), sparse=True))
    tokens = int(enc.lengths.sum())
    return await answer(request, lambda: responses.sparse_tei_body(enc.sparse), tokens * responses.SPARSE_ENTRY_JSON)


@router.post("/rerank", summary="TEI: texts ranked by ColBERT MaxSim against the query, best first",
             response_model_exclude_none=True)
async def rerank(req: RerankRequest, request: Request) -> list[Rank]:
    from m3rt.kernels import rerank as maxsim_rerank

    ctx = context(request)
    check_direction(req.truncation_direction)
    rt, admission = ctx.runtime, ctx.admission
    texts = admission.texts(req.texts, "texts")
    query = (ctx.query_prompt or "") + req.query
    q = await admission.tokenize(request, [query], rt.query_max_length, "query")
    docs = await admission.tokenize(request, texts, rt.passage_max_length, "texts")
    if not req.truncate:
        check_whole(q, rt.query_max_length, "query")
        check_whole(docs, rt.passage_max_length, "texts")
    width = rt.output_dims["colbert"]
    tokens = int(q.lengths.sum() + docs.lengths.sum())
    text_bytes = sum(len(t) for t in texts) * 3 if req.return_text else 0
    cost = responses.encode_cost(len(texts) + 1, tokens, colbert=width, colbert_format="base64_fp16")
    admission.hold(request, responses.Cost(len(texts) * 64 + text_bytes, cost.arrays), FEWER)
    enc = await admission.encode(request, Tokenized.join([q, docs]), Outputs(colbert=True))
    query_vecs, packed = enc.colbert.row(0), enc.rows(1, len(enc)).colbert
    idx, scores = await admission.in_thread(request, maxsim_rerank, query_vecs, packed.vectors, packed.offsets,
                                            len(texts))

    def build():
        ranks = [{"index": int(i), "score": float(s), **({"text": texts[int(i)]} if req.return_text else {})}
                 for i, s in zip(idx, scores)]
        return [responses.dumps(ranks)]

    return await answer(request, build, len(texts) * 64 + text_bytes)


@router.post("/tokenize", summary="TEI: the tokens each input is read as")
async def tokenize(req: TokenizeRequest, request: Request) -> list[list[Token]]:
    ctx = context(request)
    rt, admission = ctx.runtime, ctx.admission
    texts = with_prompt(ctx, admission.texts(req.inputs), req.prompt_name)
    tok = await admission.tokenize(request, texts, rt.manifest.max_length)
    estimate = int(tok.lengths.sum()) * responses.TOKEN_JSON
    admission.hold(request, responses.Cost(estimate, int(tok.lengths.sum()) * 8), FEWER)
    specials = set(rt.manifest.special_ids.values())
    limit = admission.budget.limit

    chunks = await admission.in_thread(request, lambda: responses.tokenize_body(
        tok.rows, specials=specials, keep_specials=req.add_special_tokens, decode=rt.tokenizer.decode_one,
        limit=limit))
    size = sum(len(c) for c in chunks)
    if size > estimate:  # token texts longer than the estimate's: hold the rest too
        admission.hold(request, size - estimate, FEWER)
    return responses.ChunkedJSON(chunks)
