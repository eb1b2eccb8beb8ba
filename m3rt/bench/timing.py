"""Timing encode calls: every backend on the same inputs in one run, warm-up first, a time budget per point."""

from __future__ import annotations

import gc
import time

import numpy as np

from m3rt.bench.harness import summarise, time_calls


def check_outputs(backend: str, result: dict, token_lengths, hidden: int, heads: int = 3) -> None:
    """The outputs are there, one per text (heads 3: all three, with one ColBERT vector per token but <s>,
    which also proves the backend saw the intended token count; heads 1: the dense vector of a dense-only
    peer)."""
    n = len(token_lengths)
    dense, lexical, colbert = result["dense_vecs"], result["lexical_weights"], result["colbert_vecs"]
    problems = []
    if dense is None or tuple(np.shape(dense)) != (n, hidden):
        problems.append(f"dense_vecs shape {None if dense is None else np.shape(dense)}, expected {(n, hidden)}")
    if heads == 1:
        if problems:
            raise RuntimeError(f"backend {backend} returned unexpected outputs: " + "; ".join(problems))
        return
    if lexical is None or len(lexical) != n:
        problems.append(f"lexical_weights for {None if lexical is None else len(lexical)} texts, expected {n}")
    if colbert is None or len(colbert) != n:
        problems.append(f"colbert_vecs for {None if colbert is None else len(colbert)} texts, expected {n}")
    else:
        wrong = [(i, len(v), int(t) - 1) for i, (v, t) in enumerate(zip(colbert, token_lengths)) if len(v) != int(t) - 1]
        if wrong:
            i, got, want = wrong[0]
            problems.append(f"text {i} has {got} ColBERT vectors, expected {want} ({len(wrong)} texts off)")
    if problems:
        raise RuntimeError(f"backend {backend} returned unexpected outputs: " + "; ".join(problems))


def measure_point(backends, texts: list[str], batch_size: int, max_length: int, reps: int,
                  time_budget_s: float, hidden: int, progress) -> dict[str, dict]:
    """Latency of one encode call of `texts` per backend: {name: summary}.

    Backend by backend: a warm-up call (outputs checked), then up to `reps` timed calls back to back,
    stopping early once that backend has spent `time_budget_s` on timed calls (one call is always made).
    Calls of different backends are not alternated one by one: right after a torch call, an onnxruntime
    call (and the reverse) ran up to 2x slower on a 2-core machine (the other library's thread pool still
    spinning, its own gone cold), which would time the switch rather than the backend.
    """
    lengths = [max_length] * len(texts)
    summaries = {}
    for b in backends:
        check_outputs(b.name, b.encode(texts, batch_size, max_length), lengths, hidden, b.heads)  # warm-up, checked
        progress.update(1)
        times = time_calls(lambda: b.encode(texts, batch_size, max_length), reps, warmup=0,
                           budget_s=time_budget_s, on_call=lambda: progress.update(1))
        progress.update(reps - len(times))  # the calls the budget cut, so the bar still ends full
        summaries[b.name] = {**summarise(times), "budget_hit": len(times) < reps}
    return summaries


def measure_corpus(backends, texts: list[str], token_lengths, batch_size: int, max_length: int, hidden: int,
                   progress, outputs: dict | None = None) -> dict[str, dict]:
    """Throughput of one encode call over the whole corpus per backend, each right after a warm-up call
    on the corpus's longest batch; `outputs` (a dict) receives each backend's outputs."""
    longest = np.argsort(-np.asarray(token_lengths), kind="stable")[:batch_size]
    warm_texts, warm_lengths = [texts[i] for i in longest], [token_lengths[i] for i in longest]
    tokens = int(np.sum(token_lengths))
    rows = {}
    for b in backends:
        check_outputs(b.name, b.encode(warm_texts, batch_size, max_length), warm_lengths, hidden, b.heads)
        progress.update(1)
        gc.collect()
        t0 = time.perf_counter()
        result = b.encode(texts, batch_size, max_length)
        seconds = time.perf_counter() - t0
        check_outputs(b.name, result, token_lengths, hidden, b.heads)
        if outputs is not None:
            outputs[b.name] = result
        rows[b.name] = {"texts": len(texts), "tokens": tokens, "seconds": seconds,
                        "texts_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds}
        progress.update(1)
    return rows


def fidelity_to(reference: dict, result: dict) -> dict:
    """A backend's corpus outputs against the baseline's: the worst and mean dense cosine, and, where both
    computed them, the mean ColBERT cosine and the mean top-10 overlap of the lexical weights."""
    a = np.asarray(reference["dense_vecs"], dtype=np.float64)
    b = np.asarray(result["dense_vecs"], dtype=np.float64)
    cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    out = {"dense_min_cosine": float(cos.min()), "dense_mean_cosine": float(cos.mean())}
    if reference.get("colbert_vecs") is not None and result.get("colbert_vecs") is not None:
        rows = [(np.asarray(x, np.float64), np.asarray(y, np.float64))
                for x, y in zip(reference["colbert_vecs"], result["colbert_vecs"]) if len(x)]
        col = np.concatenate([np.sum(x * y, axis=1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1),
                                                                 1e-30) for x, y in rows])
        out["colbert_mean_cosine"] = float(col.mean())
    if reference.get("lexical_weights") is not None and result.get("lexical_weights") is not None:
        def top(w):
            return {t for t, v in sorted(w.items(), key=lambda kv: -float(kv[1]))[:10] if float(v) > 0}

        overlaps = [len(top(x) & top(y)) / len(top(x)) for x, y in zip(reference["lexical_weights"],
                                                                       result["lexical_weights"]) if top(x)]
        out["sparse_top10_overlap"] = float(np.mean(overlaps)) if overlaps else 1.0
    return out
