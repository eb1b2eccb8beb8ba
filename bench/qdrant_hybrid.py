"""BGE-M3's three outputs in Qdrant (m3rt.integrations.qdrant): indexing throughput against the bare iter_encode
rate, the query latency of hybrid search + ColBERT rerank from STORED vectors (m3rt over local mode's arrays,
and Qdrant's own query), and what ColBERT pruning saves and costs. Beside bench/milvus_hybrid.py (whose rerank
re-encodes the candidates).

    python bench/qdrant_hybrid.py --artifact ART [--artifact ART2 ...] [--docs 10000] [--texts 512] [--rounds 3] \\
        [--queries 50] [--repeats 3] [--pruning-artifact TRAINED_ART] [--skip indexing] --out bench/results

Indexing (per artifact): one corpus of --texts texts (token lengths uniform in 16..256, exact), alternated over
--rounds: the bare rate (iter_encode of all three outputs, chunks consumed and dropped), then
HybridCollection.insert of the same texts into a new local-mode collection in memory (":memory:") and in a
directory (Qdrant's local-mode persistence, a SQLite row per point). Medians.
Query latency (per artifact): --docs documents (16..256 tokens) in a ":memory:" collection, --queries queries of
8..32 tokens; per query, timed on their own and in turn (the machine's other load falls on every path alike):
the query's encoding (dense + sparse + ColBERT); the fused candidates (dense + sparse, RRF) from Qdrant's query
and from m3rt's over local mode's stored arrays (local_search.py); the rerank alone; and the search with the
ColBERT rerank of 100 candidates from the stored vectors excluding the query's encoding: local mode's default
(m3rt's candidates, rerank in m3rt.kernels), Qdrant's candidates with the same rerank (the default before
local_search.py), and all inside Qdrant (the server path; local mode runs its rerank as a scan of the whole
collection). The three searches must return the same ids. Parts that take milliseconds are timed --repeats
times per query, and the query's median kept. p50 / p99 over the queries.
Pruning (--pruning-artifact, the trained test model): top-10 overlap of pruned against full MaxSim on
tests/qdrant/multilingual_set.py, per method and fraction kept, with the stored bytes per passage.
Writes qdrant-hybrid.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = 100


def make_corpus(artifact: str, n: int, lo: int, hi: int, seed: int) -> tuple[list[str], int]:
    from m3rt.artifact import read_manifest
    from m3rt.bench.texts import ExactLengthTexts
    from m3rt.runtime.tokenize import TextTokenizer

    manifest = read_manifest(artifact, verify=False)
    lengths = np.random.default_rng([seed, 1]).integers(lo, hi + 1, n)
    maker = ExactLengthTexts(TextTokenizer.from_manifest(manifest), manifest.max_length)
    return maker.texts(lengths, np.random.default_rng([seed, 2])), int(lengths.sum())


def bare_encode(rt, texts) -> float:
    t = time.perf_counter()
    for _ in rt.iter_encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True):
        pass
    return time.perf_counter() - t


def insert(rt, texts, where) -> float:
    from m3rt.integrations.qdrant import HybridCollection

    with HybridCollection.create(where, "bench", rt, overwrite=True) as col:
        t = time.perf_counter()
        assert col.insert(texts) == len(texts)
        return time.perf_counter() - t


def indexing(args, artifact: str, record: dict) -> None:
    import shutil
    import tempfile

    from m3rt import M3Runtime

    texts, tokens = make_corpus(artifact, args.texts, 16, 256, 0)
    rows = []
    with M3Runtime(artifact) as rt:
        rt.encode(texts[:8])  # warm
        for r in range(args.rounds):
            folder = tempfile.mkdtemp(prefix="m3rt-bench-qdrant-")
            row = {"iter_encode": bare_encode(rt, texts), "insert :memory:": insert(rt, texts, ":memory:"),
                   "insert local path": insert(rt, texts, folder)}
            shutil.rmtree(folder)
            rows.append(row)
            print(f"{Path(artifact).name} round {r}: " + ", ".join(f"{k} {v:.1f} s" for k, v in row.items()), flush=True)
    record.setdefault("indexing", {})[Path(artifact).name] = {"texts": len(texts), "tokens": tokens, "rounds": rows}


def pct(xs) -> dict:
    return {"p50_ms": float(np.percentile(xs, 50) * 1e3), "p99_ms": float(np.percentile(xs, 99) * 1e3)}


def query_latency(args, artifact: str, record: dict) -> None:
    from m3rt import M3Runtime
    from m3rt.integrations.qdrant import HybridCollection
    from m3rt.integrations.qdrant.queries import Fusion

    docs, doc_tokens = make_corpus(artifact, args.docs, 16, 256, 1)
    queries, _ = make_corpus(artifact, args.queries, 8, 32, 2)
    rt = M3Runtime(artifact)
    col = HybridCollection.create(":memory:", "latency", rt)
    t = time.perf_counter()
    col.insert(docs)
    fill_s = time.perf_counter() - t
    print(f"{Path(artifact).name}: indexed {len(docs)} documents in {fill_s:.0f} s", flush=True)
    fusion = Fusion()
    # The parts after the query's encoding are timed through the collection's own steps (private: a bench).
    from m3rt.integrations.qdrant.stored_vectors import StoredColbert
    from m3rt.kernels import rerank as maxsim_rerank

    stored = StoredColbert(col.client, col.name)
    times: dict[str, list[float]] = {k: [] for k in (
        "encode_query", "fused_candidates", "local_candidates", "rerank_stored_100", "search_rerank_client",
        "search_qdrant_candidates_rerank_client", "search_rerank_in_qdrant", "search_whole_call")}

    def timed(key, fn, repeats=1):
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            runs.append(time.perf_counter() - t)
        times[key].append(statistics.median(runs))
        return out

    t = time.perf_counter()
    col.search(queries[0])  # warm; the first search builds local_search.py's copies
    first_search = time.perf_counter() - t
    fast = args.repeats

    def one_query(q: str) -> None:
        encoded = timed("encode_query", lambda: col._encode_queries([q], True, None))
        cands = timed("fused_candidates", lambda: col._fused(encoded, fusion, CANDIDATES, CANDIDATES, False))
        here = timed("local_candidates", lambda: col._fused_here(encoded, fusion, CANDIDATES, CANDIDATES), fast)
        assert here == cands, "m3rt's candidates differ from Qdrant's"

        def rerank_only():
            vectors, offsets = stored.read([h.id for h in cands[0]])
            return maxsim_rerank(encoded[0].colbert, vectors, offsets, 10)

        timed("rerank_stored_100", rerank_only, fast)
        a = timed("search_rerank_client", lambda: col._rerank_here(encoded, fusion, CANDIDATES, 10, "client"), fast)
        b = timed("search_qdrant_candidates_rerank_client",
                  lambda: col._rerank_here(encoded, fusion, CANDIDATES, 10, "qdrant"))
        c = timed("search_rerank_in_qdrant", lambda: col._rerank_in_qdrant(encoded, fusion, CANDIDATES, 10))
        assert [h.id for h in a[0]] == [h.id for h in b[0]] == [h.id for h in c[0]], "the search paths disagree"
        timed("search_whole_call", lambda: col.search(q, limit=10, candidates=CANDIDATES), fast)

    for q in queries:
        one_query(q)
    per = col.stored.per_passage()
    record.setdefault("query", {})[Path(artifact).name] = {
        "docs": len(docs), "doc_tokens": doc_tokens, "fill_seconds": fill_s, "queries": len(queries), "limit": 10,
        "candidates": CANDIDATES, "ranker": "rrf", "dims": rt.output_dims, "bytes_per_passage": per,
        "repeats": fast, "first_search_seconds": first_search, **{k: pct(v) for k, v in times.items()}}
    col.close()
    rt.close()


def pruning(args, record: dict) -> None:
    from m3rt import M3Runtime
    from m3rt.integrations.qdrant import HybridCollection

    spec = importlib.util.spec_from_file_location("multilingual_set", ROOT / "tests" / "qdrant" / "multilingual_set.py")
    ml = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ml)
    docs = ml.passages()
    rows = []
    with M3Runtime(args.pruning_artifact) as rt:
        full = None
        for by, keep in [(None, None), ("sparse", 0.5), ("coverage", 0.5), ("sparse", 0.75), ("coverage", 0.75)]:
            options = {} if keep is None else {"colbert_keep": keep, "prune_by": by}
            with HybridCollection.create(":memory:", "prune", rt, **options) as col:
                t = time.perf_counter()
                col.insert(docs)
                seconds = time.perf_counter() - t
                tops = [[h.id for h in hits] for hits in col.search(ml.QUERIES, limit=10, rerank_in="qdrant",
                                                                    candidates=len(docs))]
                per = col.stored.per_passage()
            if full is None:
                full = tops
            overlap = [len(set(a) & set(b)) / 10 for a, b in zip(tops, full)]
            rows.append({"by": by or "none", "keep": keep or 1.0, "top10_overlap_mean": float(np.mean(overlap)),
                         "top10_overlap_min": float(np.min(overlap)), "colbert_bytes_per_passage": per["colbert"],
                         "colbert_vectors_per_passage": per["colbert_vectors"], "insert_seconds": seconds})
            print(f"pruning {by} {keep}: overlap {np.mean(overlap):.3f}, {per['colbert']:.0f} B/passage", flush=True)
    record["pruning"] = {"artifact": Path(args.pruning_artifact).name, "passages": len(docs),
                         "queries": len(ml.QUERIES), "rows": rows}


def carried(part: dict) -> list[str]:
    """The line saying a part comes from an earlier run (not rerun with this one), and a blank line."""
    return [f"(From the run of {part['from_run']}.)", ""] if "from_run" in part else []


def table(record: dict) -> str:
    m = record["machine"]
    lines = [f"# BGE-M3 in Qdrant local mode ({record['date']}, commit {record['git_commit']})", "",
             f"Machine: {m['cpu']}, CPU class {m['cpu_class']}, {m['cores']} cores. Versions: "
             + ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v), ""]
    for name, ix in record.get("indexing", {}).items():
        lines += [f"## Indexing {ix['texts']} texts ({ix['tokens']} tokens, 16-256 each) with {name}: all three outputs",
                  "", *carried(ix), "| what | " + " | ".join(f"round {i + 1}" for i in range(len(ix["rounds"])))
                  + " | texts/s (median) | vs iter_encode |", "|---|" + "---|" * (len(ix["rounds"]) + 2)]
        bare = statistics.median(r["iter_encode"] for r in ix["rounds"])
        for key in ix["rounds"][0]:
            times = [r[key] for r in ix["rounds"]]
            med = statistics.median(times)
            lines.append(f"| {key} | " + " | ".join(f"{t:.1f} s" for t in times)
                         + f" | {ix['texts'] / med:.1f} | {bare / med:.2f}x |")
        lines.append("")
    for name, q in record.get("query", {}).items():
        b = q["bytes_per_passage"]
        lines += [f"## One query over {q['docs']} documents ({q['doc_tokens']} tokens) with {name} "
                  f"(dense {q['dims']['dense']}, ColBERT {q['dims']['colbert']}), local mode in memory", "",
                  f"{q['queries']} queries of 8-32 tokens, limit {q['limit']}, {q['candidates']} candidates, RRF. "
                  f"Filled in {q['fill_seconds']:.0f} s. Stored per passage: dense {b['dense']:.0f} B, sparse "
                  f"{b['sparse']:.0f} B, ColBERT {b['colbert']:.0f} B ({b['colbert_vectors']:.0f} float16 vectors)."
                  + (f" Timed in turn per query; the millisecond parts {q['repeats']} times each, median kept. "
                     f"First search (builds m3rt's copies of the stored vectors): {q['first_search_seconds']:.2f} s."
                     if "repeats" in q else ""),
                  "", *carried(q), "| part | p50 | p99 |", "|---|---|---|"]
        for key, label in (("search_rerank_client", "**search + ColBERT rerank of 100 from stored vectors, query "
                                                     "encoding excluded** (local mode's default: candidates and "
                                                     "rerank in m3rt)"),
                           ("search_qdrant_candidates_rerank_client", "the same with Qdrant's candidates "
                                                                      "(candidates_in=\"qdrant\")"),
                           ("search_rerank_in_qdrant", "the same, all inside Qdrant (the server path; local mode "
                                                       "scans the whole collection)"),
                           ("local_candidates", "of which: fused candidates (dense + sparse, RRF) in m3rt from "
                                                "local mode's stored arrays"),
                           ("fused_candidates", "of which: fused candidates (dense + sparse prefetch, RRF) in Qdrant"),
                           ("rerank_stored_100", "of which: the rerank alone (read 100 candidates' stored vectors + "
                                                 "MaxSim in m3rt.kernels)"),
                           ("encode_query", "the query's encoding (dense + sparse + ColBERT)"),
                           ("search_whole_call", "HybridCollection.search, the whole call (encoding included)")):
            if key in q:
                lines.append(f"| {label} | {q[key]['p50_ms']:.1f} ms | {q[key]['p99_ms']:.1f} ms |")
        lines.append("")
    if "pruning" in record:
        p = record["pruning"]
        lines += [f"## ColBERT pruning on the trained test model ({p['artifact']}): {p['passages']} multilingual "
                  f"passages, {p['queries']} queries", "",
                  "Top-10 of MaxSim over every passage (inside Qdrant) against the unpruned collection's.", "",
                  *carried(p),
                  "| pruning | kept | top-10 overlap (mean) | (worst query) | ColBERT bytes / passage | vectors / passage |",
                  "|---|---|---|---|---|---|"]
        for r in p["rows"]:
            lines.append(f"| {r['by']} | {r['keep']:.2f} | {r['top10_overlap_mean']:.3f} | {r['top10_overlap_min']:.1f} "
                         f"| {r['colbert_bytes_per_passage']:.0f} | {r['colbert_vectors_per_passage']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", action="append", default=[], help="m3rt artifact(s): one model size each")
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="timings per query of the millisecond parts (median)")
    ap.add_argument("--pruning-artifact", help="the trained test model's artifact, for the pruning table")
    ap.add_argument("--skip", choices=["indexing", "query"], action="append", default=[])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from m3rt.bench.harness import run_record

    record = run_record(("m3rt", "onnxruntime", "qdrant-client", "numpy"))
    previous = args.out / "qdrant-hybrid.json"
    if previous.is_file():  # parts not rerun come from the last record, marked with the run that measured them
        old = json.loads(previous.read_text())
        last = f"{old['date']}, commit {old['git_commit']}"
        for part in ("indexing", "query", "pruning"):
            for key, value in (old.get(part) or {}).items() if part != "pruning" else []:
                record.setdefault(part, {})[key] = {**value, "from_run": value.get("from_run", last)}
            if part == "pruning" and "pruning" in old and not args.pruning_artifact:
                record["pruning"] = {**old["pruning"], "from_run": old["pruning"].get("from_run", last)}
    for artifact in args.artifact:
        if "indexing" not in args.skip:
            indexing(args, artifact, record)
        if "query" not in args.skip:
            query_latency(args, artifact, record)
    if args.pruning_artifact:
        pruning(args, record)
    args.out.mkdir(parents=True, exist_ok=True)
    previous.write_text(json.dumps(record, indent=2) + "\n")
    text = table(record)
    (args.out / "qdrant-hybrid.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
