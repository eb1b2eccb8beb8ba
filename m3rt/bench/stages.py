"""Where an m3rt encode call spends its time: M3Runtime._encode's steps replayed with a timer around each,
so the runtime itself carries no timing code."""

from __future__ import annotations

import time

import numpy as np

from m3rt.artifact import OUTPUT_NAMES
from m3rt.runtime import heads
from m3rt.runtime.batching import pad_batch, plan_batches

STAGES = ("tokenise", "batching", "engine", "heads")


def stage_split(runtime, texts: list[str], batch_size: int, max_length: int) -> dict:
    """Seconds and share per stage for encoding `texts` with all three outputs, as M3Runtime.encode does."""
    manifest = runtime.manifest
    seconds = dict.fromkeys(STAGES, 0.0)
    n = len(texts)
    clock = time.perf_counter

    t = clock()
    rows = runtime.tokenizer.encode(texts, max_length)
    lengths = np.array([len(r) for r in rows])
    seconds["tokenise"] += clock() - t

    dense = np.zeros((n, manifest.hidden_size), dtype=np.float32)
    lexical, vectors = [None] * n, [None] * n
    t = clock()
    batches = list(plan_batches(lengths, batch_size, runtime.batch_tokens))
    seconds["batching"] += clock() - t
    for idx in batches:
        t0 = clock()
        ids, mask = pad_batch([rows[i] for i in idx], manifest.pad_id)
        t1 = clock()
        raw = runtime.engine.run(ids, mask, list(OUTPUT_NAMES))
        t2 = clock()
        dense[idx] = heads.dense_rows(raw["dense_vecs"])
        for i, d in zip(idx, heads.lexical_weights(raw["sparse_weights"], ids, lengths[idx], manifest.sparse_skip_ids)):
            lexical[i] = d
        for i, v in zip(idx, heads.colbert_rows(raw["colbert_vecs"], lengths[idx])):
            vectors[i] = v
        t3 = clock()
        seconds["batching"] += t1 - t0
        seconds["engine"] += t2 - t1
        seconds["heads"] += t3 - t2
    total = sum(seconds.values())
    return {"seconds": seconds, "share": {k: v / total for k, v in seconds.items()}, "total_s": total,
            "batches": len(batches)}
