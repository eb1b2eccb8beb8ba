"""The encode pipeline: tokenize -> plan -> run -> collect, one chunk of texts at a time, timed per stage.

`tokenize` turns texts into id rows; `encode_chunk` plans length-sorted batches within the engine's limits,
runs each on the engine, and collects the heads' outputs into one `Encoded` in input order. M3Runtime drives
it (whole inputs for encode, bounded windows for iter_encode); benchmarks read the stage timings it records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from m3rt.runtime import heads
from m3rt.runtime.batching import pad_batch, plan_batches
from m3rt.runtime.encoded import Encoded, PackedVectors, SparseRows

OUTPUT_OF = {"dense": "dense_vecs", "sparse": "sparse_weights", "colbert": "colbert_vecs"}
STAGES = ("tokenize", "plan", "engine", "heads")


@dataclass(frozen=True)
class Tokenized:
    start: int
    rows: list[np.ndarray]
    lengths: np.ndarray
    truncated: np.ndarray
    seconds: float


@dataclass(frozen=True)
class Plan:
    """What one encode call asks for, within the engine's limits."""

    max_length: int
    batch_size: int
    batch_tokens: int
    outputs: tuple[str, ...]  # of "dense", "sparse", "colbert"


class Pipeline:
    def __init__(self, tokenizer, engine, *, pad_id: int, skip_ids: tuple[int, ...], hidden: int, colbert_dim: int,
                 truncate_dim: int | None = None):
        self.tokenizer, self.engine = tokenizer, engine
        self.pad_id, self.skip_ids = pad_id, skip_ids
        # truncate_dim: vectors cut, then re-normalised (the graph's outputs are unit vectors; upstream cuts
        # before normalising, which gives the same unit vectors).
        self.cut = truncate_dim
        self.hidden = min(hidden, truncate_dim or hidden)
        self.colbert_dim = min(colbert_dim, truncate_dim or colbert_dim)

    def tokenize(self, texts: list[str], start: int, max_length: int) -> Tokenized:
        t = time.perf_counter()
        rows, cut = self.tokenizer.encode_counting_cuts(texts, max_length)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        return Tokenized(start, rows, lengths, cut, time.perf_counter() - t)

    def encode_chunk(self, tok: Tokenized, plan: Plan, progress: Callable[[int], None] | None = None) -> Encoded:
        clock = time.perf_counter
        seconds = dict.fromkeys(STAGES, 0.0)
        seconds["tokenize"] = tok.seconds
        n, lengths = len(tok.rows), tok.lengths
        want = set(plan.outputs)
        dense = np.empty((n, self.hidden), dtype=np.float32) if "dense" in want else None
        lexical: list = [None] * n if "sparse" in want else []
        if "colbert" in want:  # packed in input order: text i's n_i - 1 vectors at offsets[i]
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.maximum(lengths - 1, 0), out=offsets[1:])
            pieces: list = [None] * n
        names = [OUTPUT_OF[k] for k in plan.outputs]
        t = clock()
        batches = list(plan_batches(lengths, plan.batch_size, plan.batch_tokens)) if n else []
        seconds["plan"] += clock() - t
        for idx in batches:
            t0 = clock()
            ids, mask = pad_batch([tok.rows[i] for i in idx], self.pad_id)
            t1 = clock()
            raw = self.engine.run(ids, mask, names)
            t2 = clock()
            if dense is not None:
                dense[idx] = heads.dense_rows(raw["dense_vecs"])[:, : self.hidden]
            if "sparse" in want:
                for i, row in zip(idx, heads.lexical_rows(raw["sparse_weights"], ids, lengths[idx], self.skip_ids)):
                    lexical[i] = row
            if "colbert" in want:
                out = raw["colbert_vecs"]
                for b, (i, m) in enumerate(zip(idx.tolist(), (lengths[idx] - 1).tolist())):
                    pieces[i] = out[b, :m, : self.colbert_dim]
            seconds["plan"] += t1 - t0
            seconds["engine"] += t2 - t1
            seconds["heads"] += clock() - t2
            if progress is not None:
                progress(len(idx))
        t = clock()
        # One copy into the packed array, at the end: filling it row by row as batches came back measured ~6%
        # slower on a 200-text corpus (6-layer int8, 2 cores); holding the batches' outputs until here costs
        # at most their padded size (<= 1.25x the packed vectors).
        if "colbert" in want:
            vectors = (np.concatenate(pieces) if n else np.zeros((0, self.colbert_dim), np.float32)).astype(
                np.float32, copy=False)
        if self.cut is not None:
            if dense is not None:
                renormalise(dense)
            if "colbert" in want:
                renormalise(vectors)
        sparse = _csr(lexical) if "sparse" in want else None
        colbert = PackedVectors(vectors, offsets) if "colbert" in want else None
        seconds["heads"] += clock() - t
        return Encoded(start=tok.start, lengths=lengths, truncated=tok.truncated, dense=dense, sparse=sparse,
                       colbert=colbert, timings=seconds)


def _csr(rows: list[tuple[np.ndarray, np.ndarray]]) -> SparseRows:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(ids) for ids, _ in rows], out=indptr[1:])
    if not rows:
        return SparseRows(indptr, np.zeros(0, np.int64), np.zeros(0, np.float32))
    return SparseRows(indptr, np.concatenate([ids for ids, _ in rows]).astype(np.int64, copy=False),
                      np.concatenate([w for _, w in rows]).astype(np.float32, copy=False))


def renormalise(rows: np.ndarray) -> None:
    """In place, as torch's F.normalize: x / max(||x||, 1e-12) per row."""
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    rows /= norms
