"""MaxSim on the CPU (numpy only): blocked fp32 matrix products plus a segmented max.

Per block of whole documents (sized by token count) one BLAS call S = D_block @ Q.T fills a
bounded fp32 buffer [tokens, query rows]; np.maximum.reduceat takes the per-document max along
the token axis and a sum over query rows gives the score. Blocks run on a few worker threads,
each with single-threaded BLAS: the per-block max runs in parallel too, and dynamic scheduling
keeps both cores busy when one is slowed down, where one multi-threaded BLAS call splits work
statically (faster, with fewer slow outliers: bench/results/design-notes.md).
Needs threadpoolctl to pin BLAS to one thread per worker; without it blocks run serially.

Inputs are validated by m3rt.kernels.maxsim; these functions assume valid packed arrays.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

# Similarity buffer per worker: 1 MiB = [8192 tokens, 32 query rows] fp32. On a 2 MiB-L2 core
# 256 KiB..1 MiB were within noise at d=128 and d=1024, larger blocks slower (bench/results/design-notes.md).
S_BLOCK_BYTES = 1 << 20
# fp32 copy of a fp16 / bf16 / fp64 document block; kept small so it stays in cache for the matmul.
UPCAST_BLOCK_BYTES = 4 << 20
MIN_BLOCK_TOKENS = 256
# Queries of maxsim_many are grouped into chunks of whole queries with at most this many rows,
# so the similarity block stays a useful number of document tokens tall.
QUERY_GROUP_ROWS = 512
# Below this much work (multiply-adds) threads cost more than they save.
MIN_PARALLEL_MACS = 1 << 24


# ---------------------------------------------------------------------------------------------
# Threads


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
# The BLAS thread limit is process-wide: parallel sections run one at a time.
_parallel_lock = threading.Lock()
_blas = None  # threadpoolctl controller for the BLAS libraries, False when unavailable
_local = threading.local()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: the pool's workers are gone (its queue would never
    be served) and a lock held by another parent thread at the fork would never be released. Start over."""
    global _pool, _pool_size, _pool_lock, _parallel_lock, _local
    _pool, _pool_size = None, 0
    _pool_lock, _parallel_lock = threading.Lock(), threading.Lock()
    _local = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _blas_controller():
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController().select(user_api="blas")
        except Exception:  # threadpoolctl missing: fall back to one thread + threaded BLAS
            _blas = False
    return _blas


def default_threads() -> int:
    """Workers used when threads=None: the BLAS thread count (respects OPENBLAS_NUM_THREADS etc.)."""
    ctl = _blas_controller()
    if not ctl:
        return 1
    blas_threads = max((info["num_threads"] for info in ctl.info()), default=1)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(blas_threads, cpus))


def _run(n_items: int, fn: Callable[[int], None], threads: int) -> None:
    """Call fn(i) for every i < n_items on `threads` workers pulling items from a shared counter."""
    workers = min(threads, n_items)
    ctl = _blas_controller() if workers > 1 else None
    if not ctl:
        for i in range(n_items):
            fn(i)
        return
    counter = itertools.count()

    def worker():
        while (i := next(counter)) < n_items:  # next() on itertools.count is atomic under the GIL
            fn(i)

    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers - 1:
            _pool, _pool_size = ThreadPoolExecutor(workers - 1, thread_name_prefix="m3rt-maxsim"), workers - 1
        pool = _pool
    with _parallel_lock, ctl.limit(limits=1):
        futures = [pool.submit(worker) for _ in range(workers - 1)]
        try:
            worker()
        finally:
            for f in futures:
                f.result()


def _buffer(name: str, n: int) -> np.ndarray:
    """Per-thread reusable fp32 scratch (fresh large allocations page-fault on every call)."""
    buf = getattr(_local, name, None)
    if buf is None or buf.size < n:
        buf = np.empty(max(n, 1 << 16), dtype=np.float32)
        setattr(_local, name, buf)
    return buf[:n]


# ---------------------------------------------------------------------------------------------
# fp32 conversion of a block


_F16_MASK = np.uint32(0x8FFFE000).view(np.int32)  # sign + exponent/mantissa after the shift
_F16_SCALE = np.float32(2.0**112)  # rebias exponent 15 -> 127


def to_f32(src: np.ndarray, bf16: bool = False) -> np.ndarray:
    """Return src as fp32 (no copy when it already is); bf16 arrives as its uint16 bit pattern."""
    if src.dtype == np.float32 and not bf16:
        return src
    out = _buffer("upcast", src.size).reshape(src.shape)
    if bf16:  # bf16 is the top half of an fp32
        np.left_shift(src.view(np.uint16), 16, out=out.view(np.uint32), dtype=np.uint32)
    elif src.dtype == np.float16:
        # numpy's fp16 cast is scalar here (slower than the matmul itself); the shift + rescale
        # trick is exact for finite values and faster. Inf/NaN (exponent 31) take the slow cast.
        bits = src.view(np.int16)
        if np.bitwise_and(bits, 0x7C00).max(initial=0) == 0x7C00:
            np.copyto(out, src)
        else:
            ints = out.view(np.int32)
            np.left_shift(bits, 13, out=ints, dtype=np.int32)  # sign-extends into bits 28..31
            np.bitwise_and(ints, _F16_MASK, out=ints)
            np.multiply(out, _F16_SCALE, out=out)
    else:
        np.copyto(out, src, casting="unsafe")
    return out


# ---------------------------------------------------------------------------------------------
# Planning


def _block_tokens(rows: int, d: int, upcast: bool, block_bytes: int | None) -> int:
    tok = (block_bytes or S_BLOCK_BYTES) // (4 * rows)
    if upcast:
        tok = min(tok, UPCAST_BLOCK_BYTES // (4 * d))
    return max(MIN_BLOCK_TOKENS, tok)


def _doc_blocks(offsets: np.ndarray, tok: int) -> list[tuple[int, int]]:
    """Greedy runs of whole documents with at most tok tokens (a longer document stands alone)."""
    n = len(offsets) - 1
    blocks, s = [], 0
    while s < n:
        e = int(np.searchsorted(offsets, offsets[s] + tok, side="right")) - 1
        e = min(max(e, s + 1), n)
        blocks.append((s, e))
        s = e
    return blocks


def _split_for_threads(total_tokens: int, tok: int, threads: int) -> int:
    # Aim for >= 4 blocks per worker so the tail of the run stays balanced.
    if threads > 1:
        tok = min(tok, max(MIN_BLOCK_TOKENS, -(-total_tokens // (4 * threads))))
    return tok


# ---------------------------------------------------------------------------------------------
# Kernels


def _max_over_tokens(d_rows: np.ndarray, qt: np.ndarray, tok: int, bf16: bool) -> np.ndarray:
    """[rows] max over all tokens of one (long) document, in chunks of tok tokens."""
    m = None
    for lo in range(0, d_rows.shape[0], tok):
        chunk = to_f32(d_rows[lo : lo + tok], bf16)
        s = _buffer("sim", chunk.shape[0] * qt.shape[1]).reshape(chunk.shape[0], qt.shape[1])
        np.matmul(chunk, qt, out=s)
        cm = s.max(axis=0)
        m = cm if m is None else np.maximum(m, cm, out=m)
    return m


def _thread_count(threads: int | None, macs: int) -> int:
    """An explicit count (at least 1); by default all workers, or 1 when the work is too small to split."""
    if threads is not None:
        return max(1, int(threads))
    return 1 if macs < MIN_PARALLEL_MACS else default_threads()


def maxsim_many_cpu(
    queries: np.ndarray,
    query_offsets: np.ndarray,
    docs: np.ndarray,
    doc_offsets: np.ndarray,
    *,
    docs_bf16: bool = False,
    threads: int | None = None,
    block_bytes: int | None = None,
) -> np.ndarray:
    """[n_queries, n_docs] float32 MaxSim scores of packed queries vs packed docs."""
    n_q, n_docs = len(query_offsets) - 1, len(doc_offsets) - 1
    d = docs.shape[1]
    upcast = docs_bf16 or docs.dtype != np.float32
    lens = np.diff(doc_offsets)
    out_t = np.zeros((n_docs, n_q), dtype=np.float32)  # empty docs keep 0
    if n_docs == 0 or docs.shape[0] == 0:
        return np.ascontiguousarray(out_t.T)
    threads = _thread_count(threads, queries.shape[0] * docs.shape[0] * d)

    # Whole queries per group, group rows <= QUERY_GROUP_ROWS (a longer query stands alone).
    q_blocks = _doc_blocks(query_offsets, QUERY_GROUP_ROWS)
    items = []
    for qs, qe in q_blocks:
        q_lo, q_hi = int(query_offsets[qs]), int(query_offsets[qe])
        rows = q_hi - q_lo
        qt = np.ascontiguousarray(np.asarray(queries[q_lo:q_hi], dtype=np.float32).T)  # [d, rows]
        q_starts = query_offsets[qs:qe] - q_lo
        q_lens = np.diff(query_offsets[qs : qe + 1]).astype(np.float32)
        tok = _block_tokens(rows, d, upcast, block_bytes)
        tok = _split_for_threads(docs.shape[0], tok, threads)
        group = (qs, qe, qt, q_starts, q_lens, tok)
        items.extend((group, b) for b in _doc_blocks(doc_offsets, tok))

    def run(i: int) -> None:
        (qs, qe, qt, q_starts, q_lens, tok), (s, e) = items[i]
        lo, hi = int(doc_offsets[s]), int(doc_offsets[e])
        n, rows = hi - lo, qt.shape[1]
        if n == 0:
            return
        if n > tok:  # a single long document: running max over chunks
            m = _max_over_tokens(docs[lo:hi], qt, tok, docs_bf16)[None, :]
            nz = slice(s, e)
        else:
            sim = _buffer("sim", n * rows).reshape(n, rows)
            np.matmul(to_f32(docs[lo:hi], docs_bf16), qt, out=sim)
            nonempty = lens[s:e] > 0
            # reduceat gives a wrong row for an empty segment: pass only non-empty starts,
            # which still tile the block's rows contiguously.
            m = np.maximum.reduceat(sim, doc_offsets[s:e][nonempty] - lo, axis=0)
            nz = np.flatnonzero(nonempty) + s
        if qe - qs == 1:
            out_t[nz, qs] = m.sum(axis=1) / q_lens[0]
        else:
            out_t[nz, qs:qe] = np.add.reduceat(m, q_starts, axis=1) / q_lens

    _run(len(items), run, threads)
    return np.ascontiguousarray(out_t.T)


def maxsim_pairs_cpu(
    queries: np.ndarray,
    query_offsets: np.ndarray,
    docs: np.ndarray,
    doc_offsets: np.ndarray,
    *,
    docs_bf16: bool = False,
    threads: int | None = None,
    block_bytes: int | None = None,
) -> np.ndarray:
    """[n] float32 scores, pair i = query i vs doc i."""
    n = len(query_offsets) - 1
    d = docs.shape[1]
    out = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out
    q32 = np.asarray(queries, dtype=np.float32)
    q_rows = int(np.diff(query_offsets).max())
    tok = _block_tokens(q_rows, d, docs_bf16 or docs.dtype != np.float32, block_bytes)
    threads = _thread_count(threads, int(np.diff(query_offsets) @ np.diff(doc_offsets)) * d)
    # Work items: runs of pairs holding about tok document tokens.
    chunk_tok = _split_for_threads(docs.shape[0], tok, threads)
    chunks = _doc_blocks(doc_offsets, chunk_tok)

    def run(c: int) -> None:
        s, e = chunks[c]
        for i in range(s, e):
            lo, hi = int(doc_offsets[i]), int(doc_offsets[i + 1])
            if hi == lo:
                continue
            qt = q32[query_offsets[i] : query_offsets[i + 1]].T
            out[i] = _max_over_tokens(docs[lo:hi], qt, tok, docs_bf16).sum() / qt.shape[1]

    _run(len(chunks), run, threads)
    return out
