"""Closed-loop load on `m3rt serve` against the embedded runtime (the ceiling), on the same texts and machine.

    python bench/serve_load.py ARTIFACT --out bench/results [--concurrency 1,8,32] [--duration 20]

C clients each send one text (8-512 tokens, mixed), wait for the answer, send the next, for `duration`
seconds per point. embedded: C threads calling M3Runtime.encode in one process (no HTTP, no batching across
threads). serve: `m3rt serve` on loopback, the clients in another process (this one) over HTTP (/embed).
Writes serve-load<TAG>.{json,md}: p50 / p99 latency and texts/s per mode and concurrency.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_texts(artifact: str, n: int = 400, seed: int = 0) -> list[str]:
    from m3rt.artifact import read_manifest
    from m3rt.bench.texts import ExactLengthTexts
    from m3rt.runtime.tokenize import TextTokenizer

    manifest = read_manifest(artifact, verify=False)
    maker = ExactLengthTexts(TextTokenizer.from_manifest(manifest), manifest.max_length)
    lengths = np.random.default_rng([seed, 1]).integers(8, 513, n)
    return maker.texts(lengths, np.random.default_rng([seed, 2]))


def closed_loop(call, texts: list[str], concurrency: int, duration: float) -> dict:
    """`concurrency` clients calling call(text) back to back for `duration` s: latencies and throughput."""
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + duration
    lock = threading.Lock()

    def client(k: int):
        i = k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            ok = call(texts[i % len(texts)])
            elapsed = time.perf_counter() - t
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1
            i += concurrency

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies)
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors[0], "seconds": wall,
            "texts_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3)}


def peer_rows(args, texts: list[str], levels: list[int]) -> list[dict]:
    """infinity-emb (torch, CPU) on the same weights, its OpenAI-style /embeddings route, same clients.
    --no-model-warmup: infinity's own warm-up (batches of 32 x 2049 tokens) holds its port closed for 3-4
    minutes on 2 cores, which an earlier run here took for a server that never listened; one warm request
    of ours follows instead, as for the other modes."""
    import os

    import httpx

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0")
    cmd = [args.infinity_python, "-m", "infinity_emb.cli", "v2", "--model-id", args.infinity_model, "--host",
           "127.0.0.1", "--port", str(port), "--engine", "torch", "--device", "cpu", "--batch-size", "32",
           "--no-bettertransformer", "--no-model-warmup"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open("/tmp/infinity.log", "w"))
    client = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=max(levels) + 4))
    deadline = time.monotonic() + 600
    while True:
        try:
            if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("infinity did not start: see /tmp/infinity.log")
        time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/embeddings"
    model = Path(args.infinity_model).name
    client.post(url, json={"input": texts[:8], "model": model})
    rows = []
    try:
        for c in levels:
            call = lambda t: client.post(url, json={"input": [t], "model": model}).status_code == 200  # noqa: E731
            rows.append({"mode": "infinity-emb (torch fp32, dense)", **closed_loop(call, texts, c, args.duration)})
            print(rows[-1], flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--infinity-python", help="python of a virtual environment with infinity-emb[server,torch]: "
                                              "the peer server, dense only, on --infinity-model")
    ap.add_argument("--tag", default="", help="suffix of the result files (serve-load<TAG>.md)")
    ap.add_argument("--infinity-model", help="the model directory infinity serves (the artifact's source weights)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import httpx

    from m3rt import M3Runtime
    from m3rt.bench.harness import run_record

    texts = make_texts(args.artifact)
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    rt = M3Runtime(args.artifact)
    rt.encode(texts[:8])
    for c in levels:
        rows.append({"mode": "embedded", **closed_loop(lambda t: rt.encode([t]) is not None, texts, c, args.duration)})
        print(rows[-1], flush=True)
    rt.close()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "m3rt.cli", "serve", args.artifact, "--port", str(port), "-q",
                              "--max-wait-ms", str(args.max_wait_ms)])
    url = f"http://127.0.0.1:{port}/embed"
    client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=max(levels) + 4))
    while True:
        try:
            if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    client.post(url, json={"inputs": texts[:8]})
    try:
        for c in levels:
            call = lambda t: client.post(url, json={"inputs": t}).status_code == 200  # noqa: E731
            rows.append({"mode": "serve", **closed_loop(call, texts, c, args.duration)})
            print(rows[-1], flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

    if args.infinity_python:
        rows += peer_rows(args, texts, levels)

    result = {**run_record(("m3rt", "onnxruntime", "fastapi", "uvicorn", "httpx", "numpy")),
              "artifact": args.artifact, "duration_s": args.duration, "max_wait_ms": args.max_wait_ms,
              "texts": {"count": len(texts), "tokens": "8-512, uniform"}, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"serve-load{args.tag}"
    Path(f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    lines = [f"# m3rt serve under closed-loop load ({Path(args.artifact).name})", "",
             f"- {result['date']}, commit {result['git_commit']}, {m['cpu']} (CPU class {m['cpu_class']}), "
             f"{m['cores']} cores; one text per request, 8-512 tokens; {args.duration:.0f} s per point",
             "", "| mode | concurrency | texts/s | p50 ms | p99 ms | p99/p50 | errors | / embedded | serve / peer |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    embedded = {r["concurrency"]: r["texts_per_s"] for r in rows if r["mode"] == "embedded"}
    peer = {r["concurrency"]: r["texts_per_s"] for r in rows if r["mode"].startswith("infinity")}
    for r in rows:
        ratio = f"{r['texts_per_s'] / embedded[r['concurrency']]:.2f}" if r["mode"] != "embedded" else ""
        vs_peer = f"{r['texts_per_s'] / peer[r['concurrency']]:.2f}x" if r["mode"] == "serve" and peer else ""
        lines.append(f"| {r['mode']} | {r['concurrency']} | {r['texts_per_s']:.1f} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['p99_ms'] / r['p50_ms']:.1f} | {r['errors']} | {ratio} | {vs_peer} |")
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
