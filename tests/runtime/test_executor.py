"""The pipelined executor (runtime/executor.py) on the CPU engine: the synchronous path's outputs exactly, on fresh
random texts and edge shapes; errors from every stage raised in the caller, in input order; no thread left after
an error or an early stop; at most `depth` batches held; two callers at once."""

from __future__ import annotations

import copy
import faulthandler
import threading
import time

import numpy as np
import pytest

from m3rt import M3Runtime
from m3rt.runtime import executor as executor_module
from m3rt.runtime.engine import Engine
from m3rt.runtime.executor import MIN_PIECE, Executor
from m3rt.runtime.heads import Collector
from m3rt.runtime.outputs import Outputs
from m3rt.runtime.pipeline import STAGES, Plan

WORDS = ["search", "北京", "renard", "ranking", "函数", "the", "BM25", "lobo", "!", "1000", "collection", "été",
         "Überschrift", "🙂", "x"]
ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)
MARKER = "zebra"  # in no corpus text: the engines below fail on the batch that holds it


@pytest.fixture(autouse=True)
def no_hang():
    """A hung pipeline must fail the run (with every thread's stack), not stall it."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def tokenizer_pool(monkeypatch):
    """Three tokenizer threads whatever the cores here, so that a chunk is cut into pieces."""
    monkeypatch.setattr(executor_module, "tokenize_threads", lambda: 3)


@pytest.fixture(scope="module")
def sync_rt(tiny_artifact):
    with M3Runtime(tiny_artifact, pipelined=False) as rt:
        yield rt


@pytest.fixture(scope="module")
def piped_rt(tiny_artifact):
    with M3Runtime(tiny_artifact, pipelined=True) as rt:
        yield rt


@pytest.fixture
def seed():
    """Fresh texts every run; the seed is in the test's id on failure (printed by the assertion messages)."""
    return int(np.random.SeedSequence().entropy % 2**32)


def corpus(n: int, seed: int, longest: int = 60) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(0, longest, n)]


# The executor's own stages; process-wide pools (the MaxSim kernel's) live on by design and are not counted.
STAGE_NAMES = ("m3rt-read", "m3rt-feed", "m3rt-engine-", "m3rt-collect", "m3rt-tokenize")


def stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(STAGE_NAMES)]


def assert_identical(got, want, why: str = "") -> None:
    assert got.start == want.start, why
    for name in ("lengths", "truncated"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{name} {why}"
    for part, fields in (("dense", None), ("sparse", ("indptr", "token_ids", "weights")),
                         ("colbert", ("vectors", "offsets"))):
        a, b = getattr(got, part), getattr(want, part)
        assert (a is None) == (b is None), f"{part} {why}"
        if a is None:
            continue
        for f in fields or (None,):
            x, y = (a, b) if f is None else (getattr(a, f), getattr(b, f))
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f"{part}.{f} {why}"
    assert set(got.timings) == set(STAGES), why


class Wrapped(Engine):
    """The real CPU engine, instrumented: calls in flight, an optional delay, a failure on the marker's batch."""

    name = "wrapped"
    preferred_batch_tokens = 1024

    def __init__(self, inner, *, calls: int = 1, delay: float = 0.0, fail_on: int | None = None, on_gpu=False):
        super().__init__(inner.manifest, inner.config)
        self.inner, self.delay, self.fail_on = inner, delay, fail_on
        self.concurrent_calls, self.on_gpu = calls, on_gpu
        self.is_open = True
        self.lock = threading.Lock()
        self.in_flight = self.most = self.calls = 0

    @property
    def limits(self):
        return self.inner.limits

    def _run(self, input_ids, attention_mask, outputs):
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fail_on is not None and np.isin(self.fail_on, input_ids):
                raise RuntimeError("the engine failed on the marker's batch")
            return self.inner.run(input_ids, attention_mask, outputs)
        finally:
            with self.lock:
                self.in_flight -= 1


def with_engine(rt: M3Runtime, engine) -> M3Runtime:
    """A shallow copy of `rt` running `engine` (the module's runtimes stay as they are)."""
    other = copy.copy(rt)
    other.pipeline = copy.copy(rt.pipeline)
    other.engine = other.pipeline.engine = engine
    return other


def marker_id(rt) -> int:
    """A token of MARKER that no corpus word has."""
    common = set(np.concatenate(rt.tokenizer.encode(WORDS, 32)).tolist())
    return next(int(i) for i in rt.tokenizer.encode([MARKER], 32)[0] if int(i) not in common)


# ---------------------------------------------------------------------------------------------- same outputs
CASES = {  # name: (texts from a seed, encode options)
    "empty list": (lambda s: [], {}),
    "one text": (lambda s: corpus(1, s), {}),
    "one-token texts": (lambda s: ["", "x", "!", ""] * 5, {"batch_size": 3}),
    "texts past max_length": (lambda s: corpus(40, s, longest=200) + ["word " * 400], {"max_length": 16}),
    "batch_size 1": (lambda s: corpus(23, s), {"batch_size": 1}),
    "many batches": (lambda s: corpus(300, s), {"batch_size": 4}),
    "pieces on the tokenizer pool": (lambda s: corpus(3 * MIN_PIECE + 5, s, longest=120), {"batch_size": 16}),
    "dense only": (lambda s: corpus(50, s), {"return_sparse": False, "return_colbert_vecs": False}),
    "sparse only": (lambda s: corpus(50, s), {"return_dense": False, "return_colbert_vecs": False}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_encode_equals_the_synchronous_path(sync_rt, piped_rt, seed, case):
    make, options = CASES[case]
    texts = make(seed)
    kw = {**ALL, **options}
    before = set(threading.enumerate())
    assert_identical(piped_rt.encode_native(texts, **kw), sync_rt.encode_native(texts, **kw), f"seed {seed}")
    want, got = sync_rt.encode(texts, **kw), piped_rt.encode(texts, **kw)
    assert got.keys() == want.keys()
    for key in got:
        if got[key] is None or want[key] is None:
            assert got[key] is want[key] is None, key
        elif key == "lexical_weights":
            assert got[key] == want[key]
        elif key == "colbert_vecs":
            assert all(np.array_equal(a, b) for a, b in zip(got[key], want[key], strict=True))
        else:
            assert np.array_equal(got[key], want[key]), key
    assert set(threading.enumerate()) <= before


@pytest.mark.parametrize("chunk_size,batch_size,n", [(1, 3, 9), (7, 1, 30), (7, 4, 50), (64, 8, 64), (64, 8, 65),
                                                     (100, 32, 1000), (5000, 16, 200)])
def test_iter_encode_equals_the_synchronous_path(sync_rt, piped_rt, seed, chunk_size, batch_size, n):
    texts = corpus(n, seed, longest=120) + ["word " * 300]  # one text past max_length=48
    kw = dict(ALL, chunk_size=chunk_size, batch_size=batch_size, max_length=48)
    want = list(sync_rt.iter_encode(iter(texts), **kw))
    got = list(piped_rt.iter_encode(iter(texts), **kw))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_identical(a, b, f"seed {seed}, chunk at {b.start}")
    assert not stage_threads()


@pytest.mark.parametrize("calls", [1, 2])
def test_two_batches_in_flight_give_the_same_outputs(sync_rt, piped_rt, seed, calls):
    engine = Wrapped(piped_rt.engine, calls=calls, delay=0.01)
    rt = with_engine(piped_rt, engine)
    texts = corpus(200, seed)
    kw = dict(ALL, batch_size=8)
    for a, b in zip(rt.iter_encode(texts, chunk_size=50, **kw), sync_rt.iter_encode(texts, chunk_size=50, **kw),
                    strict=True):
        assert_identical(a, b, f"seed {seed}")
    assert_identical(rt.encode_native(texts, **kw), sync_rt.encode_native(texts, **kw), f"seed {seed}")
    assert engine.most == calls  # the engine's declared calls, and no more, were in flight
    assert not stage_threads()


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("calls", [1, 2])
@pytest.mark.parametrize("where", [0, 33, 137])
def test_an_engine_error_is_raised_after_the_chunks_before_it(sync_rt, piped_rt, seed, calls, where):
    engine = Wrapped(piped_rt.engine, calls=calls, fail_on=marker_id(piped_rt))
    rt = with_engine(piped_rt, engine)
    texts = corpus(160, seed)
    texts[where] = f"{texts[where]} {MARKER}"
    before = set(threading.enumerate())
    want = list(sync_rt.iter_encode(texts, chunk_size=16, batch_size=4, **ALL))
    got = []
    with pytest.raises(RuntimeError, match="marker's batch"):
        for chunk in rt.iter_encode(iter(texts), chunk_size=16, batch_size=4, **ALL):
            got.append(chunk)
            time.sleep(0.05)  # a slow consumer: the failure comes while earlier chunks wait to be taken
    assert len(got) == where // 16  # every chunk before the failing one, as the synchronous path yields them
    for a, b in zip(got, want):
        assert_identical(a, b, f"seed {seed}")
    assert set(threading.enumerate()) <= before and not stage_threads()
    with pytest.raises(RuntimeError, match="marker's batch"):
        rt.encode_native(texts, batch_size=4, **ALL)
    assert set(threading.enumerate()) <= before


def test_a_failing_source_and_bad_texts_are_raised_in_order(piped_rt, sync_rt, seed):
    texts = corpus(50, seed)

    def failing():
        yield from texts
        raise OSError("the source broke")

    got = []
    with pytest.raises(OSError, match="source broke"):
        for chunk in piped_rt.iter_encode(failing(), chunk_size=8):
            got.append(chunk)
    assert [c.start for c in got] == list(range(0, 48, 8))  # the last full chunk before the read that failed
    with pytest.raises(TypeError, match=r"texts\[21\] is int"):
        list(piped_rt.iter_encode(["ok"] * 21 + [3], chunk_size=8))
    bad = ["fine"] * 100 + ["\ud800 lone surrogate"]
    with pytest.raises(ValueError, match="text 100 is not valid Unicode"):
        list(piped_rt.iter_encode(bad, chunk_size=32))
    with pytest.raises(ValueError, match="text 100 is not valid Unicode"):
        piped_rt.encode_native(bad)
    assert not stage_threads()


def test_a_heads_error_is_raised_and_stops_every_thread(tiny_artifact, seed):
    def progress(done, total):
        if done > 40:
            raise KeyError("the progress callback failed")

    with M3Runtime(tiny_artifact, pipelined=True, progress=progress, batch_size=4) as rt:
        with pytest.raises(KeyError, match="progress callback"):
            list(rt.iter_encode(corpus(200, seed), chunk_size=16))
        with pytest.raises(KeyError, match="progress callback"):
            rt.encode_native(corpus(200, seed))
    assert not stage_threads()


def test_a_fault_in_a_stage_itself_is_raised_not_hung(piped_rt, monkeypatch, seed):
    def broken(self):
        raise AssertionError("a bug in the feed stage")

    monkeypatch.setattr(executor_module._Run, "_feed", broken)
    with pytest.raises(AssertionError, match="bug in the feed stage"):
        list(piped_rt.iter_encode(corpus(100, seed), chunk_size=10, batch_size=4))
    assert not stage_threads()


# ---------------------------------------------------------------------------------------------- stopping, memory
def test_a_consumer_that_stops_early_leaves_no_thread(piped_rt):
    pulled = 0

    def endless():
        nonlocal pulled
        i = 0
        while True:
            pulled += 1
            i += 1
            yield f"text number {i} " + "word " * (i % 40)

    before = set(threading.enumerate())
    stream = piped_rt.iter_encode(endless(), chunk_size=16, batch_size=4)
    for _ in range(5):
        next(stream)
    time.sleep(0.2)  # the stages run ahead as far as their bounds let them
    assert {"m3rt-feed", "m3rt-collect"} <= {t.name for t in stage_threads()}  # the names counted below are live
    # 5 chunks taken; then at most: one finished and waiting, one finished and being sent, one being fed (its
    # first `depth` batches in their slots: 16 texts make more batches of 4), one tokenized in the queue, one read.
    assert pulled <= (5 + 5) * 16
    stream.close()
    assert set(threading.enumerate()) <= before and not stage_threads()
    for chunk in piped_rt.iter_encode(endless(), chunk_size=8):  # a for loop left: the generator is dropped
        break
    del chunk
    assert not stage_threads()
    piped_rt.iter_encode(endless())  # never started: nothing runs
    assert not stage_threads()


@pytest.mark.parametrize("calls,depth", [(1, 1), (1, 3), (2, 2), (2, 4)])
def test_at_most_depth_batches_are_held(piped_rt, sync_rt, monkeypatch, seed, calls, depth):
    """Held: from the engine call's start to the end of its Collector.add. A slow collector lets the engine run
    ahead: the bound is reached and never passed."""
    engine = Wrapped(piped_rt.engine, calls=calls)
    held = {"now": 0, "most": 0}
    lock = threading.Lock()
    run, add = engine._run, Collector.add

    def counted_run(*args):
        with lock:
            held["now"] += 1
            held["most"] = max(held["most"], held["now"])
        return run(*args)

    def slow_add(self, *args):
        time.sleep(0.02)
        add(self, *args)
        with lock:
            held["now"] -= 1

    engine._run = counted_run
    monkeypatch.setattr(Collector, "add", slow_add)
    pipeline = copy.copy(piped_rt.pipeline)
    pipeline.engine = engine
    plan = Plan(max_length=64, batch_size=2, batch_tokens=1024, outputs=Outputs(True, True, True))
    texts = corpus(120, seed)
    ex = Executor(pipeline, plan, depth=depth, threads=2)
    chunks = list(ex.stream((i, texts[i:i + 30]) for i in range(0, 120, 30)))
    assert held["now"] == 0 and held["most"] == depth
    assert engine.most <= calls
    monkeypatch.undo()
    for got, want in zip(chunks, sync_rt.iter_encode(texts, chunk_size=30, batch_size=2, max_length=64, **ALL),
                         strict=True):
        assert_identical(got, want, f"seed {seed}")
    assert not stage_threads()


# ---------------------------------------------------------------------------------------------- callers, config
def test_two_callers_at_once_on_one_runtime(piped_rt, sync_rt, seed):
    a, b = corpus(150, seed), corpus(170, seed + 1, longest=100)
    want = {"a": sync_rt.encode_native(a, batch_size=8, **ALL), "b": list(sync_rt.iter_encode(b, chunk_size=40, **ALL))}
    got, errors = {}, []

    def call(name):
        try:
            for _ in range(2):
                got[name] = (piped_rt.encode_native(a, batch_size=8, **ALL) if name == "a"
                             else list(piped_rt.iter_encode(iter(b), chunk_size=40, **ALL)))
        except BaseException as e:  # noqa: BLE001 - the assertion below reports it
            errors.append(e)

    callers = [threading.Thread(target=call, args=(n,)) for n in ("a", "b")]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert not errors
    assert_identical(got["a"], want["a"], f"seed {seed}")
    for x, y in zip(got["b"], want["b"], strict=True):
        assert_identical(x, y, f"seed {seed}")
    assert not stage_threads()


def test_progress_and_timings(tiny_artifact, seed):
    calls = []
    with M3Runtime(tiny_artifact, pipelined=True, progress=lambda d, t: calls.append((d, t)), batch_size=4) as rt:
        texts = corpus(90, seed)
        enc = rt.encode_native(texts)
        assert calls[-1] == (90, 90) and [d for d, _ in calls] == sorted(d for d, _ in calls)
        assert enc.timings["engine"] > 0 and enc.timings["tokenize"] > 0 and enc.timings["heads"] > 0
        calls.clear()
        chunks = list(rt.iter_encode(iter(texts), chunk_size=20))
        assert calls[-1] == (90, None) and len(calls) >= len(chunks)
        assert all(set(c.timings) == set(STAGES) and c.timings["engine"] > 0 for c in chunks)


def test_pipelined_by_default_on_gpu_engines_only(tiny_artifact, piped_rt):
    from m3rt.runtime.ort_cpu import OrtCpuEngine
    from m3rt.runtime.ort_cuda import OrtCudaEngine

    assert Engine.concurrent_calls == OrtCpuEngine.concurrent_calls == 1 and OrtCudaEngine.concurrent_calls == 2
    with M3Runtime(tiny_artifact) as rt:
        assert rt.config.pipelined is None and not rt._pipelined()
        assert with_engine(rt, Wrapped(rt.engine, on_gpu=True))._pipelined()
        assert not with_engine(rt, object())._pipelined()  # a duck-typed engine declares nothing
    off = M3Runtime(tiny_artifact, pipelined=False)
    assert not with_engine(off, Wrapped(off.engine, on_gpu=True))._pipelined()
    off.close()


def test_the_cuda_engines_own_code_runs_pipelined_by_default(tiny_artifact, seed):
    """OrtCudaEngine bound on the CPU (as tests/runtime/test_bound_buffers.py does): on_gpu, so pipelined by
    default, two calls in flight (its bound buffers for one, a binding of its own for the other), and the
    synchronous path's outputs exactly."""
    from dataclasses import replace

    from m3rt.runtime.ort_cuda import OrtCudaEngine

    class HostBound(OrtCudaEngine):
        device = "cpu"

        def providers(self, manifest, config):
            return [("CPUExecutionProvider", {})]

    texts = corpus(150, seed) + ["", "word " * 300]
    kw = dict(ALL, batch_size=8, max_length=64)
    with M3Runtime(tiny_artifact) as rt, HostBound(rt.manifest, rt.config) as engine:
        piped = with_engine(rt, engine)
        sync = with_engine(rt, engine)
        sync.config = replace(rt.config, pipelined=False)
        assert piped._pipelined() and not sync._pipelined() and engine.concurrent_calls == 2
        assert_identical(piped.encode_native(texts, **kw), sync.encode_native(texts, **kw), f"seed {seed}")
        for a, b in zip(piped.iter_encode(texts, chunk_size=40, **kw), sync.iter_encode(texts, chunk_size=40, **kw),
                        strict=True):
            assert_identical(a, b, f"seed {seed}")
    assert not stage_threads()
