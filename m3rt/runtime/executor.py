"""The pipelined executor: tokenizing, the engine and the heads at once, so that a GPU engine never waits on the
host (M3Runtime uses it where RuntimeConfig.pipelined says so).

Stages, each on threads of its own, joined by queues:
  read      pulls chunks of texts from the caller's iterable (one thread: an iterator is not thread-safe);
  tokenize  a small pool, each chunk cut into pieces (the tokenizers library releases the GIL);
  feed      plans a chunk's batches (as Pipeline.encode_chunk does) and pads them;
  engine    `engine.concurrent_calls` threads, one engine call each;
  collect   heads.Collector.add per batch while the engine runs the next; one `Encoded` per chunk.
The caller's thread only takes finished chunks.

What holds, whatever the timing:
- outputs: the synchronous path's, exactly: the same chunks, the same batches, and Collector takes a chunk's
  batches in any order;
- memory: at most `depth` batches are padded and not yet collected (a slot each), and a few chunks of texts;
- errors travel in input order: a failure in chunk k (reading, tokenizing, the engine, the heads) is raised in
  the caller once the chunks before k were taken, as the synchronous path would;
- stopping (an error raised, the generator closed) stops every thread and joins it before returning. A call
  inside the engine, or a read from the caller's iterable, is waited for: neither can be interrupted.
Stage seconds are recorded per chunk as encode_chunk records them, summed over a stage's threads; the stages
overlap here, so they add up to more than the wall time.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from m3rt.runtime.batching import pad_batch, plan_batches
from m3rt.runtime.encoded import Encoded
from m3rt.runtime.heads import Collector
from m3rt.runtime.pipeline import STAGES, Pipeline, Plan, Tokenized

# How often a waiting stage looks whether the run was stopped (only stopping waits for it).
POLL_S = 0.05
# Texts per tokenizer job at least: below this a call's fixed cost outweighs what another thread gains.
MIN_PIECE = 64


def tokenize_threads() -> int:
    """Half the cores this process may use, 1 to 4: tokenizing is a share of the engine's time, and the other
    stages want cores too."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))


class Executor:
    """One encode call's plan, run pipelined: `encode` one list as one chunk, `stream` chunks of a stream.

    `check()` runs before each chunk is planned (the runtime's artifact-unchanged check); `progress(n)` after
    each batch is collected, on the collector's thread. `depth`: batches padded and not yet collected at most
    (default: the engine's concurrent calls + 2, one being collected and one ready for the engine)."""

    def __init__(self, pipeline: Pipeline, plan: Plan, *, check: Callable[[], None] | None = None,
                 progress: Callable[[int], None] | None = None, depth: int | None = None,
                 threads: int | None = None):
        self.pipeline, self.plan = pipeline, plan
        self.check, self.progress = check, progress
        # Duck-typed engines (tests, wrappers) may not declare it: one call at a time is always safe.
        self.calls = max(1, int(getattr(pipeline.engine, "concurrent_calls", 1)))
        self.depth = max(1, depth if depth is not None else self.calls + 2)
        self.threads = max(1, threads if threads is not None else tokenize_threads())

    def encode(self, texts: list[str]) -> Encoded:
        """`texts` as one chunk (the length sorting spans all of it), tokenized in pieces on the pool; a chunk
        of one batch runs in this thread (there is nothing to overlap, and threads cost a start)."""
        if len(texts) <= MIN_PIECE or self.threads == 1:
            tok = self.pipeline.tokenize(texts, 0, self.plan.max_length)
        else:
            with _TokenizerPool(self.threads) as pool:
                tok = Tokenized.join([f.result() for f in self._submit(pool, 0, texts)])
        plan = self.plan
        if sum(1 for _ in itertools.islice(plan_batches(tok.lengths, plan.batch_size, plan.batch_tokens), 2)) < 2:
            return self.pipeline.encode_chunk(tok, plan, self.progress)
        run = _Run(self)
        try:
            run.start(ready=tok)
            (encoded,) = run.outputs()
            return encoded
        finally:
            run.close()

    def stream(self, chunks: Iterable[tuple[int, list[str]]]) -> Iterator[Encoded]:
        """One `Encoded` per (start, texts) chunk, in order. A generator: nothing starts before the first
        next(), and closing it stops and joins every thread."""
        run = _Run(self)
        try:
            run.start(source=iter(chunks))
            yield from run.outputs()
        finally:
            run.close()

    def _submit(self, pool: ThreadPoolExecutor, start: int, texts: list[str]) -> list[Future]:
        """A chunk's tokenizer jobs: pieces of it, in order (at least one, so an empty chunk is tokenized
        as the synchronous path tokenizes it)."""
        size = max(MIN_PIECE, math.ceil(len(texts) / self.threads))
        return [pool.submit(self.pipeline.tokenize, texts[i:i + size], start + i, self.plan.max_length)
                for i in range(0, max(len(texts), 1), size)]


class _Stopped(Exception):
    """The run was stopped: a stage leaves quietly."""


class _Failed:
    """An error on its way to the caller, in input order."""

    def __init__(self, error: BaseException):
        self.error = error


_END = object()  # a stage has nothing more to send


class _Run:
    """One pipelined run: its threads, queues, batch slots and stop flag."""

    def __init__(self, ex: Executor):
        self.ex = ex
        self.stop = threading.Event()
        self.fatal: list[BaseException] = []  # a stage's own bug: stops everything, raised in the caller
        self.threads: list[threading.Thread] = []
        self.pool: ThreadPoolExecutor | None = None
        self.slots = threading.Semaphore(ex.depth)
        # read -> feed: one chunk read ahead of the one being fed (its pieces tokenizing meanwhile).
        self.chunks: queue.Queue = queue.Queue(1)
        # feed -> collect: each chunk's Tokenized and batch count, in order; feed -> engine -> collect: the
        # batches. Unbounded queues bounded by the slots: a chunk's header is sent before its first slot.
        self.headers: queue.Queue = queue.Queue()
        self.batches: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        # collect -> the caller: one finished chunk waits while the caller works on the previous one.
        self.done: queue.Queue = queue.Queue(1)

    # ---------------------------------------------------------------- running
    def start(self, source: Iterator[tuple[int, list[str]]] | None = None, ready: Tokenized | None = None) -> None:
        if ready is not None:
            self.chunks = queue.Queue()
            self.chunks.put(ready)
            self.chunks.put(_END)
        else:
            self.pool = ThreadPoolExecutor(self.ex.threads, thread_name_prefix="m3rt-tokenize")
            self._spawn("m3rt-read", self._read, source)
        self._spawn("m3rt-feed", self._feed)
        for i in range(self.ex.calls):
            self._spawn(f"m3rt-engine-{i}", self._engine)
        self._spawn("m3rt-collect", self._collect)

    def outputs(self) -> Iterator[Encoded]:
        while (item := self._take()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop every stage and wait for it (idempotent)."""
        self.stop.set()
        for t in self.threads:
            t.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _spawn(self, name: str, target, *args) -> None:
        def body():
            try:
                target(*args)
            except _Stopped:
                pass
            except BaseException as e:  # noqa: BLE001 - a fault outside a stage's work: the caller raises it
                self.fatal.append(e)
                self.stop.set()

        t = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    # ---------------------------------------------------------------- stages
    def _read(self, source: Iterator[tuple[int, list[str]]]) -> None:
        try:
            for start, texts in source:  # the caller's iterable is read here
                self._put(self.chunks, self.ex._submit(self.pool, start, texts))
        except _Stopped:
            raise
        except BaseException as e:  # noqa: BLE001 - the next chunk failed to come: the caller gets it in order
            self._put(self.chunks, _Failed(e))
            return
        self._put(self.chunks, _END)

    def _feed(self) -> None:
        ex, plan, no = self.ex, self.ex.plan, 0
        try:
            while (item := self._get(self.chunks)) is not _END:
                try:
                    if isinstance(item, _Failed):
                        raise item.error
                    tok = item if isinstance(item, Tokenized) else Tokenized.join([self._result(f) for f in item])
                    if ex.check is not None:
                        ex.check()
                    t = time.perf_counter()
                    batches = list(plan_batches(tok.lengths, plan.batch_size, plan.batch_tokens)) if len(tok) else []
                    plan_s = time.perf_counter() - t
                except _Stopped:
                    raise
                except BaseException as e:  # noqa: BLE001 - this chunk failed before its batches
                    self.headers.put(_Failed(e))
                    return
                self.headers.put((tok, len(batches), plan_s))
                for idx in batches:
                    self._take_slot()
                    try:
                        t = time.perf_counter()
                        ids, mask = pad_batch([tok.rows[i] for i in idx], ex.pipeline.pad_id)
                        pad_s = time.perf_counter() - t
                    except BaseException as e:  # noqa: BLE001 - in its slot's place, in order
                        self.results.put((no, _Failed(e)))
                        return
                    self.batches.put((no, idx, ids, mask, pad_s))
                no += 1
            self.headers.put(_END)
        finally:
            for _ in range(ex.calls):
                self.batches.put(_END)

    def _engine(self) -> None:
        run, names = self.ex.pipeline.engine.run, self.ex.plan.outputs.graph_names
        while (item := self._get(self.batches)) is not _END:
            no, idx, ids, mask, pad_s = item
            t = time.perf_counter()
            try:
                raw = run(ids, mask, names)
            except BaseException as e:  # noqa: BLE001 - the caller gets it once the chunks before are taken
                self.results.put((no, _Failed(e)))
                continue
            self.results.put((no, (idx, raw, ids, pad_s, time.perf_counter() - t)))

    def _collect(self) -> None:
        ex, pipe = self.ex, self.ex.pipeline
        early: dict[int, list] = defaultdict(list)  # results of later chunks, kept in their slots
        no = 0
        while (header := self._get(self.headers)) is not _END:
            if isinstance(header, _Failed):
                self._put(self.done, header)
                return
            tok, count, plan_s = header
            seconds = dict.fromkeys(STAGES, 0.0)
            seconds["tokenize"], seconds["plan"] = tok.seconds, plan_s
            try:
                collector = Collector(tok.lengths, ex.plan.outputs, hidden=pipe.hidden, colbert_dim=pipe.colbert_dim,
                                      skip_ids=pipe.skip_ids, truncate_dim=pipe.truncate_dim)
                for _ in range(count):
                    item = early[no].pop(0) if early[no] else self._result_of(no, early)
                    try:
                        if isinstance(item, _Failed):
                            raise item.error
                        idx, raw, ids, pad_s, engine_s = item
                        t = time.perf_counter()
                        collector.add(idx, raw, ids)
                        seconds["heads"] += time.perf_counter() - t
                        seconds["plan"] += pad_s
                        seconds["engine"] += engine_s
                        del item, raw, ids  # the Collector keeps what it needs
                    finally:
                        self.slots.release()
                    if ex.progress is not None:
                        ex.progress(len(idx))
                t = time.perf_counter()
                encoded = collector.finish(tok.start, tok.truncated, seconds)
                seconds["heads"] += time.perf_counter() - t
            except _Stopped:
                raise
            except BaseException as e:  # noqa: BLE001 - this chunk failed: the chunks before it were sent
                self._put(self.done, _Failed(e))
                return
            early.pop(no, None)
            del collector, tok
            self._put(self.done, encoded)
            no += 1
        self._put(self.done, _END)

    # ---------------------------------------------------------------- waiting, stoppably
    def _get(self, q: queue.Queue):
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                pass

    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.put(item, timeout=POLL_S)
            except queue.Full:
                pass

    def _take_slot(self) -> None:
        while not self.slots.acquire(timeout=POLL_S):
            if self.stop.is_set():
                raise _Stopped

    def _result(self, future: Future) -> Tokenized:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return future.result(timeout=POLL_S)
            except FutureTimeout:
                pass

    def _result_of(self, no: int, early: dict[int, list]):
        """The next result of chunk `no`; results of later chunks that come first wait in `early`."""
        while True:
            got, item = self._get(self.results)
            if got == no:
                return item
            early[got].append(item)

    def _take(self):
        """The caller's wait for the next chunk: a stage's own fault is raised here."""
        while True:
            if self.fatal:
                raise self.fatal[0]
            try:
                return self.done.get(timeout=POLL_S)
            except queue.Empty:
                pass


class _TokenizerPool:
    """A tokenizer pool that cancels what has not started when left by an error."""

    def __init__(self, threads: int):
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="m3rt-tokenize")

    def __enter__(self) -> ThreadPoolExecutor:
        return self.executor

    def __exit__(self, *exc) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
