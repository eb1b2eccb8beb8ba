"""Hybrid search in Milvus Lite: indexing throughput of m3rt's pipeline against pymilvus's own
BGEM3EmbeddingFunction (FlagEmbedding's PyTorch model inside) on the same weights, corpus and machine, and the
query latency of hybrid search + ColBERT rerank over 10,000 documents.

    python bench/milvus_hybrid.py --model MODEL_DIR --artifact INT8_ARTIFACT [--artifact FP32_ARTIFACT] \\
        [--texts 256] [--rounds 2] [--docs 10000] [--fill-artifact ART] --out bench/results

Indexing: one corpus (token lengths uniform in 16..256, exact), each system writing it into its own collection
of one Milvus Lite database with the same schema (HybridCollection.create), alternated over `rounds`:
  - pymilvus BGEM3EmbeddingFunction(MODEL_DIR, device="cpu", use_fp16=False), its default batch_size 16:
    encode_documents on 256 texts at a time, then MilvusClient.insert of those rows, as pymilvus's hybrid
    search example does; the model's load is not timed. A text with no sparse weight (Milvus refuses an empty
    sparse vector: the random-weight model gives some) gets the placeholder m3rt's collection stores;
  - m3rt HybridCollection.insert(texts) per --artifact (iter_encode chunks, upserts).
Query latency: --docs documents indexed (the vectors from --fill-artifact, default the first --artifact: a
smaller model with the same widths and tokenizer fills the index faster, and the search reads only the vectors),
then single queries (8-32 tokens) through HybridCollection.search with the first --artifact: limit 10, 50
candidates, RRF, ColBERT rerank; p50 / p99 of the whole call, and its parts timed on their own.
Writes milvus-hybrid.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEER_BATCH = 256  # texts per encode_documents + insert call on the pymilvus side


def make_corpus(artifact: str, n: int, lo: int, hi: int, seed: int) -> tuple[list[str], int]:
    from m3rt.artifact import read_manifest
    from m3rt.bench.texts import ExactLengthTexts
    from m3rt.runtime.tokenize import TextTokenizer

    manifest = read_manifest(artifact, verify=False)
    lengths = np.random.default_rng([seed, 1]).integers(lo, hi + 1, n)
    maker = ExactLengthTexts(TextTokenizer.from_manifest(manifest), manifest.max_length)
    return maker.texts(lengths, np.random.default_rng([seed, 2])), int(lengths.sum())


def index_with_pymilvus(ef, client, name: str, runtime, texts: list[str]) -> float:
    from m3rt.integrations.milvus import HybridCollection
    from m3rt.integrations.milvus.collection import EMPTY_SPARSE_WEIGHT

    HybridCollection.create(client, name, runtime, overwrite=True)  # the same schema and indexes
    t = time.perf_counter()
    for lo in range(0, len(texts), PEER_BATCH):
        batch = texts[lo:lo + PEER_BATCH]
        out = ef.encode_documents(batch)
        sparse = out["sparse"]
        rows = [{"id": lo + k, "text": text, "dense": out["dense"][k],
                 # Milvus refuses an empty sparse vector: the same placeholder m3rt's collection stores.
                 "sparse": dict(zip(sparse.indices[sparse.indptr[k]:sparse.indptr[k + 1]].tolist(),
                                    sparse.data[sparse.indptr[k]:sparse.indptr[k + 1]].tolist()))
                 or {0: EMPTY_SPARSE_WEIGHT}}
                for k, text in enumerate(batch)]
        client.insert(name, rows)
    return time.perf_counter() - t


def index_with_m3rt(runtime, client, name: str, texts: list[str]) -> float:
    from m3rt.integrations.milvus import HybridCollection

    col = HybridCollection.create(client, name, runtime, overwrite=True)
    t = time.perf_counter()
    assert col.insert(texts) == len(texts)
    return time.perf_counter() - t


def indexing(args, client, record: dict) -> None:
    from pymilvus.model.hybrid import BGEM3EmbeddingFunction

    from m3rt import M3Runtime

    texts, tokens = make_corpus(args.artifact[0], args.texts, 16, 256, 0)
    record["indexing"] = {"texts": len(texts), "tokens": tokens, "rounds": []}
    runtimes = {Path(a).name: M3Runtime(a) for a in args.artifact}
    ef = BGEM3EmbeddingFunction(str(args.model), device="cpu", use_fp16=False)
    for rt in runtimes.values():  # warm: the first call's allocations are not the steady state
        rt.encode(texts[:8])
    ef.encode_documents(texts[:8])
    for r in range(args.rounds):
        row = {"pymilvus BGEM3EmbeddingFunction": index_with_pymilvus(ef, client, "peer", next(iter(runtimes.values())),
                                                                       texts)}
        print(f"round {r}: pymilvus {row['pymilvus BGEM3EmbeddingFunction']:.1f} s", flush=True)
        for name, rt in runtimes.items():
            row[f"m3rt {name}"] = index_with_m3rt(rt, client, "m3rt", texts)
            print(f"round {r}: m3rt {name} {row[f'm3rt {name}']:.1f} s", flush=True)
        record["indexing"]["rounds"].append(row)
    for rt in runtimes.values():
        rt.close()


def query_latency(args, client, record: dict) -> None:
    from m3rt import M3Runtime
    from m3rt.integrations.milvus import HybridCollection

    fill = args.fill_artifact or args.artifact[0]
    docs, doc_tokens = make_corpus(fill, args.docs, 16, 256, 1)
    if client.has_collection("latency") and client.get_collection_stats("latency")["row_count"] == len(docs):
        fill_s = None  # --db of an earlier run: the same documents are in (make_corpus is deterministic)
        client.flush("latency")
    else:
        with M3Runtime(fill) as filler:
            col = HybridCollection.create(client, "latency", filler, overwrite=True)
            t = time.perf_counter()
            col.insert(docs)
            fill_s = time.perf_counter() - t
        print(f"indexed {len(docs)} documents in {fill_s:.0f} s", flush=True)
    queries, _ = make_corpus(args.artifact[0], args.queries, 8, 32, 2)
    rt = M3Runtime(args.artifact[0])
    col = HybridCollection(client, "latency", rt)
    col.search(queries[0], limit=10)  # warm
    total, fused, rerank, encode = [], [], [], []
    for q in queries:
        t = time.perf_counter()
        col.search(q, limit=10, candidates=50)
        total.append(time.perf_counter() - t)
        t = time.perf_counter()
        hits = col.search(q, limit=50, candidates=50, rerank=False)
        fused.append(time.perf_counter() - t)
        t = time.perf_counter()
        rt.encode_queries([q], return_dense=True, return_sparse=True)
        encode.append(time.perf_counter() - t)
        t = time.perf_counter()
        rt.rerank(q, [h.text for h in hits], top_k=10)
        rerank.append(time.perf_counter() - t)
    pct = lambda xs: {"p50_ms": float(np.percentile(xs, 50) * 1e3), "p99_ms": float(np.percentile(xs, 99) * 1e3)}  # noqa: E731
    record["query"] = {"docs": len(docs), "doc_tokens": doc_tokens, "fill_artifact": Path(fill).name,
                       "fill_seconds": fill_s, "artifact": Path(args.artifact[0]).name, "queries": len(queries),
                       "limit": 10, "candidates": 50, "ranker": "rrf",
                       "search_with_rerank": pct(total), "encode_query": pct(encode),
                       "hybrid_search_without_rerank": pct(fused), "rerank_50_candidates": pct(rerank)}
    rt.close()


def table(record: dict) -> str:
    m = record["machine"]
    lines = [f"# Hybrid search in Milvus Lite ({record['date']}, commit {record['git_commit']})", "",
             f"Machine: {m['cpu']}, CPU class {m['cpu_class']}, {m['cores']} cores. Versions: "
             + ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v), ""]
    if "indexing" in record:
        ix = record["indexing"]
        names = list(ix["rounds"][0])
        peer = statistics.median(r[names[0]] for r in ix["rounds"])
        lines += [f"## Indexing {ix['texts']} texts ({ix['tokens']} tokens, 16-256 each): encode + write to Milvus Lite",
                  "", *([f"(from the run of {ix['from_run']})", ""] if "from_run" in ix else []), "| system | " + " | ".join(f"round {i + 1}" for i in range(len(ix["rounds"])))
                  + " | texts/s (median) | vs pymilvus |", "|---|" + "---|" * (len(ix["rounds"]) + 2)]
        for n in names:
            times = [r[n] for r in ix["rounds"]]
            med = statistics.median(times)
            lines.append(f"| {n} | " + " | ".join(f"{t:.1f} s" for t in times)
                         + f" | {ix['texts'] / med:.1f} | {peer / med:.2f}x |")
        lines.append("")
    if "query" in record:
        q = record["query"]
        fill = f" in {q['fill_seconds']:.0f} s" if q["fill_seconds"] is not None else " by an earlier run"
        lines += [f"## One query over {q['docs']} documents ({q['doc_tokens']} tokens; index filled with "
                  f"{q['fill_artifact']}'s vectors{fill}), queries encoded and reranked "
                  f"with {q['artifact']}", "",
                  f"{q['queries']} queries of 8-32 tokens, limit {q['limit']}, {q['candidates']} candidates, "
                  f"{q['ranker'].upper()}.", "", "| part | p50 | p99 |", "|---|---|---|"]
        for key, label in (("search_with_rerank", "HybridCollection.search, ColBERT rerank (the whole call)"),
                           ("hybrid_search_without_rerank", "search without rerank (query encode + Milvus hybrid)"),
                           ("encode_query", "query encode alone (dense + sparse)"),
                           ("rerank_50_candidates", "rerank alone (re-encode 50 candidates + MaxSim)")):
            lines.append(f"| {label} | {q[key]['p50_ms']:.1f} ms | {q[key]['p99_ms']:.1f} ms |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the model directory (BAAI/bge-m3 layout)")
    ap.add_argument("--artifact", action="append", required=True, help="m3rt artifact(s) of that model")
    ap.add_argument("--fill-artifact", help="artifact whose vectors fill the latency index (same widths)")
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--skip", choices=["indexing", "query"], action="append", default=[])
    ap.add_argument("--db", help="a Milvus Lite file to use (its 'latency' collection is reused when it holds "
                                  "--docs rows; default: a new temporary one)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from pymilvus import MilvusClient

    from m3rt.bench.harness import run_record

    record = run_record(("m3rt", "onnxruntime", "torch", "FlagEmbedding", "pymilvus", "milvus-lite",
                         "pymilvus-model", "numpy"))
    db = args.db or str(Path(tempfile.mkdtemp(prefix="m3rt-bench-milvus-")) / "bench.db")
    client = MilvusClient(db)
    previous = args.out / "milvus-hybrid.json"
    if args.skip and previous.is_file():  # the parts not rerun come from the last run's record, marked so
        old = json.loads(previous.read_text())
        for part in args.skip:
            if part in old:
                record[part] = {**old[part], "from_run": f"{old['date']}, commit {old['git_commit']}"}
    try:
        if "indexing" not in args.skip:
            indexing(args, client, record)
        if "query" not in args.skip:
            query_latency(args, client, record)
    finally:
        client.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "milvus-hybrid.json").write_text(json.dumps(record, indent=2) + "\n")
    text = table(record)
    (args.out / "milvus-hybrid.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
