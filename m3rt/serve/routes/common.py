"""What the routes share: the context, checks of common fields, and encode-then-answer through admission."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from m3rt.runtime.encoded import Encoded
from m3rt.runtime.heads import cut
from m3rt.runtime.pipeline import Tokenized
from m3rt.serve.context import ServeContext
from m3rt.serve.errors import Kind, ServeError
from m3rt.serve.responses import BUILD_IN_THREAD_BYTES, ChunkedJSON, Cost


def context(request) -> ServeContext:
    return request.app.state.m3rt


def check_direction(direction: str) -> None:
    if direction.lower() != "right":
        raise ServeError(Kind.VALIDATION, "truncation_direction: only right truncation is supported (the model "
                                          "reads a text's first max_length tokens)", param="truncation_direction")


def check_dimensions(ctx: ServeContext, dimensions: int | None) -> None:
    width = ctx.runtime.output_dims["dense"]
    if dimensions is not None and dimensions > width:
        raise ServeError(Kind.VALIDATION, f"dimensions={dimensions} is above this model's {width} dense dimensions",
                         param="dimensions")


def dense_of(enc: Encoded, dimensions: int | None) -> np.ndarray:
    """The dense vectors, cut to `dimensions` and re-normalised as the runtime's truncate_dim does."""
    return cut(enc.dense, dimensions)


def with_prompt(ctx: ServeContext, texts: list[str], prompt_name: str | None) -> list[str]:
    prompt = ctx.prompt(prompt_name)
    return [prompt + t for t in texts] if prompt else texts


def check_whole(tok: Tokenized, max_length: int, what: str = "inputs") -> None:
    """truncate=false: a text longer than max_length is refused before it is encoded."""
    if tok.truncated.any():
        i = int(np.flatnonzero(tok.truncated)[0])
        raise ServeError(Kind.TOO_LARGE, f"{what}[{i}] is longer than max_length={max_length} tokens and truncate "
                                         "is false", param=what)


async def encode(request, texts: list[str], *, max_length: int, outputs, cost: Callable[[Tokenized], Cost],
                 hint: str, truncate: bool = True, what: str = "inputs") -> Encoded:
    """Tokenize (off the event loop), refuse what cannot be answered, hold the response's cost, encode."""
    ctx = context(request)
    tok = await ctx.admission.tokenize(request, texts, max_length, what)
    if not truncate:
        check_whole(tok, max_length, what)
    ctx.admission.hold(request, cost(tok), hint)
    return await ctx.admission.encode(request, tok, outputs)


async def answer(request, build: Callable[[], list[bytes]], wire: int) -> ChunkedJSON:
    """The body built by `build`: on a worker thread when large (the event loop keeps answering /health)."""
    admission = context(request).admission
    chunks = await admission.in_thread(request, build) if wire > BUILD_IN_THREAD_BYTES else build()
    return ChunkedJSON(chunks)
