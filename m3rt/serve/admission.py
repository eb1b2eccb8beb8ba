"""Admission: every route's cost is counted before it is paid.

1. Bodies: Content-Length over --max-body-bytes is 413 before a byte is read (middleware.py), and a body is
   held against the in-flight byte budget (twice: its bytes and its parsed text) while its request lives; a
   body of more JSON values than its texts could need is 413 before it is parsed, and lists are counted before
   their items are validated (bodies.py, schemas.py).
2. Texts are tokenized off the event loop (bounded work per text: the runtime reads a long text's first windows
   only), in runs that a server-wide gate lets in by the characters they make the tokenizer read
   (tokenizing.py), so the queue is counted in tokens, not texts, and big texts are tokenized one at a time.
3. The response's cost (responses.Cost, from the token counts) is held against the same budget before the
   engine runs: a request that alone would pass it (with its own body) gets 413, one that would pass it while
   others hold it 429.
4. The texts go to the batcher in parts of at most `part_tokens` tokens, so that a client that leaves stops
   its work within one part: parts not yet started are dropped.
Every wait (for the gate, a worker thread, the engine) ends early when the client leaves (499) or the drain
deadline passes (503). What a request holds is given back when its response is sent (middleware.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from m3rt.runtime.encoded import Encoded, concat
from m3rt.runtime.pipeline import Tokenized
from m3rt.runtime.windows import max_window
from m3rt.serve import memory
from m3rt.serve.batcher import Overloaded
from m3rt.serve.errors import Kind, ServeError
from m3rt.serve.responses import Cost, too_large
from m3rt.serve.tokenizing import CharGate

# Key of a request's Holding in its ASGI scope's state.
HOLDING = "m3rt_holding"
# Texts tokenized in one call of the runtime's tokenizer.
TOKENIZE_TEXTS = 64
# After a run that made the tokenizer read this many characters, its freed working memory (in the arena of
# whichever thread ran it) is given back before the next run is let in.
TRIM_AFTER_CHARS = 1 << 16
# How often a waiting request looks whether its client left or the drain deadline passed (s).
POLL_S = 0.2


class Budget:
    """Bytes that requests in flight may hold at once. Used from the event loop only: no lock."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, nbytes: int) -> None:
        if self.used + nbytes > self.limit:
            raise ServeError(Kind.OVERLOADED, f"overloaded: requests in flight hold {self.used} of "
                                              f"{self.limit} bytes and this one needs {nbytes}")
        self.used += nbytes

    def give(self, nbytes: int) -> None:
        self.used -= nbytes


@dataclass
class Holding:
    """What one request holds of the budget; given back once, when its response is sent."""

    budget: Budget
    nbytes: int = 0
    peak: int = field(default=0)

    def take(self, nbytes: int, hint: str = "") -> None:
        if self.nbytes + nbytes > self.budget.limit:  # with what this request holds already, it never fits
            more = f"; {hint}" if hint else ""
            raise ServeError(Kind.TOO_LARGE, f"this request would hold about {self.nbytes + nbytes} bytes (its body "
                                             f"and what it computes), over the server's limit of {self.budget.limit}"
                                             f" (--max-response-bytes){more}")
        self.budget.take(nbytes)
        self.nbytes += nbytes
        self.peak = max(self.peak, self.nbytes)

    def release(self) -> None:
        self.budget.give(self.nbytes)
        self.nbytes = 0


class Admission:
    def __init__(self, runtime, batcher, budget: Budget, *, max_texts: int, part_tokens: int, threads: int,
                 metrics, draining):
        self.rt, self.batcher, self.budget, self.metrics = runtime, batcher, budget, metrics
        self.max_texts, self.part_tokens = max_texts, part_tokens
        self.draining = draining  # () -> bool: past the drain deadline
        # The interpreter waits for these threads at exit: a tokenizer call cut by the drain (its request answered
        # 503) ends before the process does, within one run's bounded work (a native call must not be torn down).
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="m3rt-admit")
        # At most one longest text's read (or that many characters of shorter texts) in the tokenizer at once.
        self.gate = CharGate(max_window(runtime.manifest.max_length))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def in_thread(self, request, fn, *args):
        """fn(*args) on a worker thread, waited for as `wait` waits (a call cut short runs on, unanswered)."""
        future = self.pool.submit(fn, *args)
        try:
            await self.wait(request, [asyncio.wrap_future(future)])
        except BaseException:
            future.cancel()  # not started yet: never runs
            raise
        return future.result()

    def texts(self, inputs, what: str = "inputs") -> list[str]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise ServeError(Kind.VALIDATION, f"{what}: empty", param=what)
        if len(texts) > self.max_texts:
            raise ServeError(Kind.TOO_LARGE, f"{what}: {len(texts)} texts, over the limit of {self.max_texts} per "
                                             "request (--max-texts-per-request)", param=what)
        return texts

    def max_length(self, value, name: str, default: int) -> int:
        """`value` checked against the model (None: `default`); 0 and negatives are refused, never a default."""
        try:
            return self.rt.check_max_length(default if value is None else value, name)
        except ValueError as e:
            raise ServeError(Kind.VALIDATION, str(e), param=name) from None

    async def tokenize(self, request, texts: list[str], max_length: int, what: str = "inputs") -> Tokenized:
        """Token ids of `texts`, a run at a time (the tokenizer's working objects, several times the ids' size,
        are held for one run only), each run let in by the gate."""
        parts = []
        for lo, hi, chars in self._runs(texts, max_length):
            parts.append(await self._tokenize_run(request, texts, lo, hi, chars, max_length, what))
        return parts[0] if len(parts) == 1 else Tokenized.join(parts)

    def _runs(self, texts: list[str], max_length: int):
        """(lo, hi, chars): runs of at most TOKENIZE_TEXTS texts that make the tokenizer read at most the gate's
        limit of characters (a text alone may make it read its whole window cap)."""
        cap, lo = max_window(max_length), 0
        while lo < len(texts):
            hi, chars = lo, 0
            while hi < len(texts) and hi - lo < TOKENIZE_TEXTS:
                read = min(len(texts[hi]), cap)
                if hi > lo and chars + read > self.gate.limit:
                    break
                chars, hi = chars + read, hi + 1
            yield lo, hi, chars
            lo = hi

    async def _tokenize_run(self, request, texts, lo: int, hi: int, chars: int, max_length: int,
                            what: str) -> Tokenized:
        turn = self.gate.enter(chars)
        try:
            await self.wait(request, [turn])
        except BaseException:
            if not turn.cancel():  # let in already: its place is given back
                self.gate.leave(chars)
            raise
        loop = asyncio.get_running_loop()

        def leave(_) -> None:  # once the tokenizer is done with the run, however its request ended
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
                loop.call_soon_threadsafe(self.gate.leave, chars)

        def run() -> Tokenized:
            try:
                return self.rt.tokenize(texts[lo:hi], max_length=max_length)
            except (TypeError, ValueError) as e:  # a lone surrogate, a non-str: named by its index in `what`
                message = re.sub(r"\btext (\d+)", lambda m: f"text {int(m[1]) + lo}", str(e), count=1)
                raise ServeError(Kind.VALIDATION, f"{what}: {message}", param=what) from None
            finally:
                if chars >= TRIM_AFTER_CHARS:
                    memory.trim()

        future = self.pool.submit(run)
        future.add_done_callback(leave)
        try:
            await self.wait(request, [asyncio.wrap_future(future)])
        except BaseException:
            future.cancel()
            raise
        return future.result()

    def hold(self, request, cost: Cost | int, hint: str = "") -> None:
        nbytes = cost.total if isinstance(cost, Cost) else cost
        holding = request.scope["state"].get(HOLDING)
        if holding is None:  # an app called without the middleware (tests): a holding of its own
            holding = request.scope["state"][HOLDING] = Holding(self.budget)
        if isinstance(cost, Cost) and holding.nbytes + nbytes > self.budget.limit:
            raise too_large(cost, self.budget.limit, hint, held=holding.nbytes)
        holding.take(nbytes, hint)

    async def encode(self, request, tok: Tokenized, outputs) -> Encoded:
        parts = list(self._parts(tok))
        try:
            futures = self.batcher.submit(parts, outputs)
        except Overloaded as e:
            raise ServeError(Kind.OVERLOADED, f"overloaded: {e}") from None
        waiters = [asyncio.wrap_future(f) for f in futures]
        try:
            await self.wait(request, waiters)
        except BaseException:
            for f in futures:
                f.cancel()  # parts not started are dropped by the batcher
            raise
        try:
            results = [w.result() for w in waiters]
        except ValueError as e:
            raise ServeError(Kind.VALIDATION, str(e)) from None
        except Exception as e:  # noqa: BLE001 - the engine failed: the request gets why
            raise ServeError(Kind.BACKEND, f"{type(e).__name__}: {e}") from None
        return concat(results)

    async def wait(self, request, waiters) -> None:
        """Until every waiter is done; 499 when the client leaves first, 503 past the drain deadline."""
        pending = set(waiters)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=POLL_S)
            if not pending:
                break
            if self.draining():
                raise ServeError(Kind.SHUTTING_DOWN, "the server is shutting down and this request did not finish "
                                                     "within its drain time (--graceful-timeout); retry")
            if await request.is_disconnected():  # nobody to answer: what is not started is dropped
                self.metrics.dropped.inc()
                raise ServeError(Kind.CANCELLED, "the client disconnected")

    def _parts(self, tok: Tokenized):
        """Consecutive runs of texts of at most part_tokens tokens each (a longer text alone)."""
        if len(tok) == 0:
            return
        ends = np.cumsum(tok.lengths)
        lo = 0
        while lo < len(tok):
            base = ends[lo - 1] if lo else 0
            hi = int(np.searchsorted(ends, base + self.part_tokens, side="right"))
            hi = min(max(hi, lo + 1), len(tok))
            yield Tokenized(start=tok.start + lo, rows=tok.rows[lo:hi], lengths=tok.lengths[lo:hi],
                            truncated=tok.truncated[lo:hi], seconds=tok.seconds if lo == 0 else 0.0)
            lo = hi
