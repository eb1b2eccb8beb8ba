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

from m3rt.runtime.batching import pad_batch, plan_batches
from m3rt.runtime.encoded import Encoded
from m3rt.runtime.heads import Collector
from m3rt.runtime.outputs import Outputs

STAGES = ("tokenize", "plan", "engine", "heads")


@dataclass(frozen=True)
class Tokenized:
    """Texts start .. start + len(rows) of an input as token ids (specials included, cut at max_length)."""

    start: int
    rows: list[np.ndarray]
    lengths: np.ndarray
    truncated: np.ndarray
    seconds: float

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def join(cls, parts: list["Tokenized"]) -> "Tokenized":
        """Several tokenized runs as one, in order (the first one's start)."""
        return cls(start=parts[0].start if parts else 0, rows=[r for p in parts for r in p.rows],
                   lengths=np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, np.int64),
                   truncated=np.concatenate([p.truncated for p in parts]) if parts else np.zeros(0, bool),
                   seconds=sum(p.seconds for p in parts))


@dataclass(frozen=True)
class Plan:
    """What one encode call asks for, within the engine's limits."""

    max_length: int
    batch_size: int
    batch_tokens: int
    outputs: Outputs


class Pipeline:
    def __init__(self, tokenizer, engine, *, pad_id: int, skip_ids: tuple[int, ...], hidden: int, colbert_dim: int,
                 truncate_dim: int | None = None):
        self.tokenizer, self.engine = tokenizer, engine
        self.pad_id, self.skip_ids = pad_id, skip_ids
        self.hidden, self.colbert_dim, self.truncate_dim = hidden, colbert_dim, truncate_dim

    def tokenize(self, texts: list[str], start: int, max_length: int) -> Tokenized:
        t = time.perf_counter()
        rows, cut = self.tokenizer.encode_counting_cuts(texts, max_length, offset=start)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        return Tokenized(start, rows, lengths, cut, time.perf_counter() - t)

    def encode_chunk(self, tok: Tokenized, plan: Plan, progress: Callable[[int], None] | None = None) -> Encoded:
        clock = time.perf_counter
        seconds = dict.fromkeys(STAGES, 0.0)
        seconds["tokenize"] = tok.seconds
        collector = Collector(tok.lengths, plan.outputs, hidden=self.hidden, colbert_dim=self.colbert_dim,
                              skip_ids=self.skip_ids, truncate_dim=self.truncate_dim)
        names = plan.outputs.graph_names
        t = clock()
        batches = list(plan_batches(tok.lengths, plan.batch_size, plan.batch_tokens)) if len(tok.rows) else []
        seconds["plan"] += clock() - t
        for idx in batches:
            t0 = clock()
            ids, mask = pad_batch([tok.rows[i] for i in idx], self.pad_id)
            t1 = clock()
            raw = self.engine.run(ids, mask, names)
            t2 = clock()
            collector.add(idx, raw, ids)
            seconds["plan"] += t1 - t0
            seconds["engine"] += t2 - t1
            seconds["heads"] += clock() - t2
            if progress is not None:
                progress(len(idx))
        t = clock()
        encoded = collector.finish(tok.start, tok.truncated, seconds)
        seconds["heads"] += clock() - t
        return encoded
