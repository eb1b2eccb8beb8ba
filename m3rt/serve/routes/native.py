"""M3-native routes: /encode (dense, sparse and ColBERT in one call, FlagEmbedding's keys) and /score
(compute_score of (query, passage) pairs)."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request

from m3rt.runtime.outputs import Outputs
from m3rt.runtime.pipeline import Tokenized
from m3rt.runtime.scoring import pair_scores
from m3rt.serve import responses
from m3rt.serve.bodies import JSONRoute
from m3rt.serve.errors import Kind, ServeError
from m3rt.serve.routes.common import answer, context, encode, with_prompt
from m3rt.serve.schemas import EncodeRequest, EncodeResponse, ScoreRequest, ScoreResponse

router = APIRouter(route_class=JSONRoute)

SMALLER = ("send fewer or shorter texts, or ask for colbert_format=base64_fp16 (about 8x smaller than float "
           "JSON)")
SCORE_KEYS = ("colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense")


@router.post("/encode", summary="M3: dense, sparse and ColBERT in one call (FlagEmbedding's keys)",
             response_model=EncodeResponse, response_model_exclude_none=True)
async def encode_route(req: EncodeRequest, request: Request):
    ctx = context(request)
    try:
        outputs = Outputs(req.return_dense, req.return_sparse, req.return_colbert_vecs)
    except ValueError as e:
        raise ServeError(Kind.VALIDATION, str(e)) from None
    max_length = ctx.admission.max_length(req.max_length, "max_length", ctx.runtime.passage_max_length)
    texts = with_prompt(ctx, ctx.admission.texts(req.inputs), req.prompt_name)
    dims = ctx.runtime.output_dims
    shape = dict(dense=dims["dense"] if outputs.dense else 0, sparse=outputs.sparse,
                 colbert=dims["colbert"] if outputs.colbert else 0, colbert_format=req.colbert_format,
                 sparse_tokens=req.sparse_tokens)
    costs = {}

    def cost(tok):
        costs["c"] = responses.encode_cost(len(tok), int(tok.lengths.sum()), **shape)
        return costs["c"]

    enc = await encode(request, texts, max_length=max_length, outputs=outputs, cost=cost, hint=SMALLER)
    decode = ctx.runtime.tokenizer.decode_one
    return await answer(request, lambda: responses.encode_body(enc, sparse_tokens=req.sparse_tokens,
                                                               colbert_format=req.colbert_format, decode=decode),
                        costs["c"].wire)


def check_weights(weights) -> list[float]:
    if weights is None:
        return [1.0, 1.0, 1.0]
    if len(weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ServeError(Kind.VALIDATION, "weights_for_different_modes: 3 finite weights >= 0 (dense, sparse, "
                                          f"colbert), got {weights}", param="weights_for_different_modes")
    if weights[0] + weights[1] <= 0:
        raise ServeError(Kind.VALIDATION, "weights_for_different_modes: dense + sparse must be > 0 (the "
                                          "sparse+dense score is divided by it)", param="weights_for_different_modes")
    return list(weights)


@router.post("/score", summary="M3: compute_score of (query, passage) pairs", response_model=ScoreResponse)
async def score(req: ScoreRequest, request: Request):
    ctx = context(request)
    rt, admission = ctx.runtime, ctx.admission
    if not req.pairs:
        raise ServeError(Kind.VALIDATION, "pairs: empty", param="pairs")
    if len(req.pairs) > admission.max_texts:
        raise ServeError(Kind.TOO_LARGE, f"pairs: {len(req.pairs)}, over the limit of {admission.max_texts} per "
                                         "request (--max-texts-per-request)", param="pairs")
    weights = check_weights(req.weights_for_different_modes)
    q_len = admission.max_length(req.max_query_length, "max_query_length", rt.query_max_length)
    p_len = admission.max_length(req.max_passage_length, "max_passage_length", rt.passage_max_length)
    prompt = ctx.query_prompt or ""
    q = await admission.tokenize(request, [prompt + p[0] for p in req.pairs], q_len, "pairs")
    p = await admission.tokenize(request, [p[1] for p in req.pairs], p_len, "pairs")
    n, dims = len(req.pairs), rt.output_dims
    every = dict(dense=dims["dense"], sparse=True, colbert=dims["colbert"])
    cost = responses.encode_cost(2 * n, int(q.lengths.sum() + p.lengths.sum()), **every)
    admission.hold(request, responses.Cost(n * len(SCORE_KEYS) * responses.FLOAT_JSON, cost.arrays),
                   "send fewer pairs")
    enc = await admission.encode(request, Tokenized.join([q, p]), Outputs(True, True, True))
    qe, pe = enc.rows(0, n), enc.rows(n, 2 * n)

    def scores() -> list[bytes]:
        # compute_score's chunking of pairs (its ColBERT padding effect) follows the runtime's batch_size.
        out = pair_scores(qe.dense, pe.dense, qe.sparse.as_dicts(), pe.sparse.as_dicts(), qe.colbert.as_list(),
                          pe.colbert.as_list(), weights, upstream_batch_size=rt.config.batch_size)
        return [responses.dumps({k: out[k] for k in SCORE_KEYS})]

    return responses.ChunkedJSON(await admission.in_thread(request, scores))
