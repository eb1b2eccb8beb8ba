"""Dynamic batching: tokenized requests from concurrent clients merged into one runtime call.

A job is a run of texts already tokenized at admission (admission.py) and what to compute. Worker threads take
the oldest job, wait up to `max_wait_ms` for more (up to `max_batch_texts` texts and `max_batch_tokens`
tokens; texts of any max_length mix, each was cut at its own), encode them all in one
M3Runtime.encode_tokenized call (the runtime's planner cuts that into engine calls) and hand each job its rows.
The queue is bounded in tokens, as text-embeddings-inference's is: past `max_queue_tokens` a submit fails at
once (the server answers 429), so queue memory is bounded by max_length per text whatever the texts' size.
A job whose future was cancelled (its client left) is dropped when its turn comes. Engine work runs on these
threads, never on the event loop.
"""

from __future__ import annotations

import functools
import operator
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from m3rt.runtime.outputs import Outputs
from m3rt.runtime.pipeline import Tokenized


class Overloaded(Exception):
    """The queue is full: retry later."""


@dataclass
class Job:
    tokenized: Tokenized
    outputs: Outputs
    counted: bool = True  # False: a health probe, left out of the batch metrics
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def tokens(self) -> int:
        return int(self.tokenized.lengths.sum())

    @property
    def texts(self) -> int:
        return len(self.tokenized)


@dataclass
class EngineState:
    """What /health reads: when the engine last answered, and how the last call ended."""

    last_ok: float | None = None  # time.monotonic() of the last successful runtime call
    last_error: str | None = None  # the last call's error, None once a call succeeds again
    running_since: float | None = None  # time.monotonic() the running call started; None when idle


class Batcher:
    def __init__(self, runtime, *, max_wait_ms: float = 5.0, max_batch_texts: int = 256,
                 max_batch_tokens: int | None = None, max_queue_tokens: int = 1 << 18, workers: int = 1,
                 on_batch=None):
        self.rt = runtime
        self.max_wait = max_wait_ms / 1000
        self.max_batch_texts = max_batch_texts
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.on_batch = on_batch  # called as on_batch(requests, texts, tokens, seconds)
        self.state = EngineState()
        self._jobs: deque[Job] = deque()
        self._queued_tokens = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"m3rt-batcher-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    @property
    def idle(self) -> bool:
        return not self._jobs and self.state.running_since is None

    def submit(self, parts: list[Tokenized], outputs: Outputs, counted: bool = True) -> list[Future]:
        """Queue the parts of one request together (all or none): one future per part, in order."""
        jobs = [Job(p, outputs, counted) for p in parts]
        tokens = sum(j.tokens for j in jobs)
        with self._cond:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if self._queued_tokens + tokens > self.max_queue_tokens and self._jobs:
                raise Overloaded(f"{self._queued_tokens} tokens are queued and this request has {tokens} "
                                 f"(limit {self.max_queue_tokens})")
            self._jobs.extend(jobs)
            self._queued_tokens += tokens
            self._cond.notify(len(jobs))
        return [j.future for j in jobs]

    def close(self, timeout: float = 30.0) -> bool:
        """Finish what is queued, then stop the workers; whether they stopped within `timeout` seconds."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _fits(self, texts: int, tokens: int, job: Job) -> bool:
        return texts + job.texts <= self.max_batch_texts and (
            self.max_batch_tokens is None or tokens + job.tokens <= self.max_batch_tokens)

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._jobs.popleft()
            batch, texts, tokens = [first], first.texts, first.tokens
            deadline = first.queued_at + self.max_wait
            while True:
                if self._jobs:
                    if not self._fits(texts, tokens, self._jobs[0]):
                        break
                    job = self._jobs.popleft()
                    batch.append(job)
                    texts, tokens = texts + job.texts, tokens + job.tokens
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            self._queued_tokens -= tokens
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]  # cancelled: client gone
            if not live:
                continue
            outputs = functools.reduce(operator.or_, (j.outputs for j in live))
            started = time.perf_counter()
            self.state.running_since = time.monotonic()
            try:
                tok = live[0].tokenized if len(live) == 1 else Tokenized.join([j.tokenized for j in live])
                enc = self.rt.encode_tokenized(tok, **outputs.flags())
            except BaseException as e:  # every waiting request gets the error
                self.state.last_error, self.state.running_since = f"{type(e).__name__}: {e}", None
                for j in live:
                    j.future.set_exception(e)
                continue
            self.state.last_ok, self.state.last_error, self.state.running_since = time.monotonic(), None, None
            counted = [j for j in live if j.counted]
            if self.on_batch is not None and counted:
                self.on_batch(len(counted), sum(j.texts for j in counted), sum(j.tokens for j in counted),
                              time.perf_counter() - started)
            if len(live) == 1:
                live[0].future.set_result(enc)
                continue
            lo = 0
            for j in live:
                j.future.set_result(enc.rows(lo, lo + j.texts))
                lo += j.texts
