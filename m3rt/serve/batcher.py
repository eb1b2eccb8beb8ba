"""Dynamic batching: requests from concurrent clients merged into one runtime call.

A request is a list of texts and what to compute. Worker threads take the oldest request, wait up to
`max_wait_ms` for more with the same max_length (up to `max_batch_texts` texts), encode them all in one
M3Runtime.encode_native call (the runtime's planner cuts that into token-budget engine calls) and hand each
request its rows. The queue is bounded by texts: past `max_queue_texts` a submit fails at once (the server
answers 429), so memory stays bounded whatever the load. Engine work runs on these threads, never on the
event loop.
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


class Overloaded(Exception):
    """The queue is full: retry later."""


@dataclass
class Job:
    texts: list[str]
    max_length: int
    outputs: Outputs
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, runtime, *, max_wait_ms: float = 5.0, max_batch_texts: int = 256,
                 max_queue_texts: int = 4096, workers: int = 1, on_batch=None):
        self.rt = runtime
        self.max_wait = max_wait_ms / 1000
        self.max_batch_texts = max_batch_texts
        self.max_queue_texts = max_queue_texts
        self.on_batch = on_batch  # called as on_batch(requests, texts, tokens, seconds)
        self._jobs: deque[Job] = deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"m3rt-batcher-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def submit(self, texts: list[str], max_length: int, outputs: Outputs) -> Future:
        job = Job(list(texts), max_length, outputs)
        with self._cond:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if self._queued_texts + len(job.texts) > self.max_queue_texts and self._jobs:
                raise Overloaded(f"{self._queued_texts} texts are queued (limit {self.max_queue_texts})")
            self._jobs.append(job)
            self._queued_texts += len(job.texts)
            self._cond.notify()
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._jobs.popleft()
            batch, texts = [first], len(first.texts)
            deadline = first.queued_at + self.max_wait
            while texts < self.max_batch_texts:
                same = next((j for j in self._jobs if j.max_length == first.max_length), None)
                if same is not None:
                    if texts + len(same.texts) > self.max_batch_texts:
                        break
                    self._jobs.remove(same)
                    batch.append(same)
                    texts += len(same.texts)
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            self._queued_texts -= texts
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]  # cancelled: client gone
            if not live:
                continue
            texts = [t for j in live for t in j.texts]
            outputs = functools.reduce(operator.or_, (j.outputs for j in live))
            started = time.perf_counter()
            try:
                enc = self.rt.encode_native(texts, max_length=live[0].max_length, **outputs.flags())
            except BaseException as e:  # every waiting request gets the error
                for j in live:
                    j.future.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(live), len(texts), int(enc.lengths.sum()), time.perf_counter() - started)
            lo = 0
            for j in live:
                j.future.set_result(enc.rows(lo, lo + len(j.texts)))
                lo += len(j.texts)
