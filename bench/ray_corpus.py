"""embed-corpus in-process against Ray Data on this machine, at equal cores, on the same corpus and artifact.

    python bench/ray_corpus.py ARTIFACT [--texts 2000] [--shards 2] [--rounds 2] --out bench/results

Rows, alternated over `rounds`: in-process (one runtime, onnxruntime on every core), Ray with 1 worker holding
every core, Ray with one worker per core; Ray runs on a local instance started here (its start is not timed;
each shard's actors start and load the artifact inside the timed run, as in a real job). Also the driver's own
cost, the Parquet writing every output row passes through (timed alone on the in-process run's tables), for the
scaling model. Writes <name>.{json,md} (default ray-corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--name", default="ray-corpus", help="result file name without extension")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import pyarrow.parquet as pq
    import ray

    from m3rt.bench.harness import run_record
    from m3rt.corpus import embed_corpus
    from milvus_hybrid import make_corpus

    cores = os.cpu_count()
    texts, tokens = make_corpus(args.artifact, args.texts, 16, 256, 3)
    work = Path(tempfile.mkdtemp(prefix="m3rt-bench-ray-"))
    src = work / "in"
    src.mkdir()
    per = -(-len(texts) // args.shards)
    for s in range(args.shards):
        rows = [{"id": i, "text": texts[i]} for i in range(s * per, min(len(texts), (s + 1) * per))]
        (src / f"shard{s}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    modes = {"in-process": {}, f"Ray, 1 worker x {cores} CPUs": dict(ray_address="local", workers=1,
                                                                      cpus_per_worker=cores),
             f"Ray, {cores} workers x 1 CPU": dict(ray_address="local", workers=cores, cpus_per_worker=1)}
    rounds = []
    for r in range(args.rounds):
        row = {}
        for name, kw in modes.items():
            out = work / f"out-{r}-{len(row)}"
            t = time.perf_counter()
            done = embed_corpus(args.artifact, src, out=out, dense=True, sparse=True, **kw)
            row[name] = time.perf_counter() - t
            assert done["rows"] == len(texts)
            print(f"round {r}: {name} {row[name]:.1f} s", flush=True)
        rounds.append(row)
    ray.shutdown()
    # The driver's share: writing the output tables (every row passes through the driver's Parquet writer).
    tables = [pq.read_table(p) for p in sorted((work / "out-0-0").glob("*.parquet"))]
    from m3rt.corpus.shards import ShardWriter

    t = time.perf_counter()
    for k, table in enumerate(tables):
        w = ShardWriter(work / f"rewrite-{k}.parquet")
        for batch in table.to_batches(max_chunksize=256):
            import pyarrow as pa

            w.write(pa.Table.from_batches([batch]))
        w.commit()
    write_s = time.perf_counter() - t
    out_bytes = sum(p.stat().st_size for p in (work / "out-0-0").glob("*.parquet"))
    shutil.rmtree(work, ignore_errors=True)

    record = {**run_record(("m3rt", "onnxruntime", "ray", "pyarrow", "numpy")), "artifact": Path(args.artifact).name,
              "texts": len(texts), "tokens": tokens, "shards": args.shards, "outputs": ["dense", "sparse"],
              "rounds": rounds, "driver_write_seconds": write_s, "output_bytes": out_bytes}
    base = statistics.median(r["in-process"] for r in rounds)
    m = record["machine"]
    lines = [f"# embed-corpus: in-process against Ray Data ({record['date']}, commit {record['git_commit']})", "",
             f"{m['cpu']}, CPU class {m['cpu_class']}, {m['cores']} cores; {record['artifact']}; {len(texts)} texts "
             f"({tokens} tokens, 16-256 each) in {args.shards} JSONL shards; dense + sparse out.", "",
             "| mode | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " | tokens/s (median) | "
             "vs in-process |", "|---|" + "---|" * (len(rounds) + 2)]
    for name in modes:
        times = [r[name] for r in rounds]
        med = statistics.median(times)
        lines.append(f"| {name} | " + " | ".join(f"{t:.1f} s" for t in times)
                     + f" | {tokens / med:,.0f} | {med / base:.2f}x the time |")
    lines += ["", f"Driver: writing the {len(texts)} output rows ({out_bytes / 2**20:.1f} MiB of Parquet) alone took "
              f"{write_s:.2f} s: {len(texts) / write_s:,.0f} rows/s, {out_bytes / 2**20 / write_s:.0f} MiB/s."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
