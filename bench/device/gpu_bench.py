"""GPU latency of m3rt's backends against PyTorch fp16 eager (SDPA), side by side in one run.

Grid: batch 1 and 32 x 128 and 512 tokens (the issue's goals), engine only (padded ids in, the three raw
outputs back on the host), median of timed runs after warm-up, CUDA synchronised. Also measured in the same
run: the card's fp16 matmul rate (8192^3, torch), so TensorRT's batch-32 x 512 rate can be stated as a share
of it. Every backend that cannot run says why. Writes gpu-<card>.json / .md to --out; the table prints last.
NOT YET RUN ON A GPU as of this commit (no device was lent to the session that wrote it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

GRID = [(1, 128), (1, 512), (32, 128), (32, 512)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--shape", choices=["bge-m3", "tiny"], default="bge-m3")
    ap.add_argument("--budget-s", type=float, default=240.0)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    deadline = time.monotonic() + args.budget_s
    import numpy as np
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: nothing to benchmark")
    card = torch.cuda.get_device_name(0)
    from m3rt.export.tiny_model import BGE_M3_SHAPE, build_tiny_model
    from m3rt.export.torch_model import load_m3_graph

    work = Path(tempfile.mkdtemp(prefix="m3rt-gpu-"))
    model_dir = build_tiny_model(work / "model", **(BGE_M3_SHAPE if args.shape == "bge-m3" else {}))
    rng = np.random.default_rng(0)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    inputs = {}
    for b, s in GRID:
        ids = rng.integers(5, vocab, (b, s)).astype(np.int64)
        ids[:, 0], ids[:, -1] = 0, 2
        inputs[(b, s)] = (ids, np.ones_like(ids))

    rows, skipped = {}, {}
    matmul_tflops = _matmul_rate(torch)

    # PyTorch fp16 eager, SDPA: the baseline.
    model = load_m3_graph(model_dir, attention="sdpa").half().cuda().eval()

    def torch_run(ids, mask):
        with torch.inference_mode():
            outs = model(torch.from_numpy(ids).cuda(), torch.from_numpy(mask).cuda())
            return [o.float().cpu().numpy() for o in outs]

    rows["pytorch-fp16"] = _time_grid(torch_run, inputs, args.reps, torch)
    del model
    torch.cuda.empty_cache()

    from m3rt.artifact import OUTPUT_NAMES, read_manifest
    from m3rt.export import export
    from m3rt.runtime.backends import _why_not, create_engine
    from m3rt.runtime.config import RuntimeConfig

    artifacts = {}
    for backend, attention in (("onnxruntime-cuda", "fused"), ("onnxruntime-tensorrt", "standard"),
                               ("tensorrt", "standard")):
        if time.monotonic() > deadline - 60:
            skipped[backend] = "out of time budget"
            continue
        try:
            if attention not in artifacts:
                artifacts[attention] = export(model_dir, work / f"fp16-{attention}", precision="fp16",
                                              attention=attention, enforce_fidelity=False)
            art = artifacts[attention]
            why = _why_not(backend, read_manifest(art))
            if backend == "tensorrt" and why and "build-engine" in why:  # the engine is built here, once
                from m3rt.export.tensorrt_build import build_engine

                build_engine(art, max_batch_tokens=32 * 512, batch_size=32)
                why = _why_not(backend, read_manifest(art))
            if why:
                skipped[backend] = why
                continue
            engine = create_engine(backend, read_manifest(art), RuntimeConfig(backend=backend))
            rows[backend] = _time_grid(lambda i, m: list(engine.run(i, m, OUTPUT_NAMES).values()),
                                       inputs, args.reps, torch)
        except Exception as e:  # noqa: BLE001 - one backend failing must not hide the others' numbers
            skipped[backend] = f"failed: {type(e).__name__}: {e}"

    flops = _model_flops(json.loads((model_dir / "config.json").read_text()), 32, 512)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "card": card,
        "commit": os.environ.get("GIT_COMMIT", ""), "platform": platform.platform(), "shape": args.shape,
        "torch": torch.__version__, "matmul_fp16_tflops": matmul_tflops, "rows": rows, "skipped": skipped,
        "batch32x512_tflops": {k: flops / v["32x512"] / 1e12 for k, v in rows.items()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = card.replace(" ", "-").lower()
    (out / f"gpu-{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = _table(result)
    (out / f"gpu-{tag}.md").write_text(table + "\n")
    print(table)


def _time_grid(run, inputs, reps, torch) -> dict[str, float]:
    times = {}
    for (b, s), (ids, mask) in inputs.items():
        run(ids, mask)  # warm-up (and TensorRT's lazy setup)
        torch.cuda.synchronize()
        samples = []
        for _ in range(reps):
            t = time.perf_counter()
            run(ids, mask)  # returns host arrays: includes the copies back
            samples.append(time.perf_counter() - t)
        times[f"{b}x{s}"] = statistics.median(samples)
    return times


def _matmul_rate(torch) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12


def _model_flops(cfg: dict, batch: int, seq: int) -> float:
    h, ffn, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    tokens = batch * seq
    dense = 2 * tokens * (4 * h * h + 2 * h * ffn) * layers
    attention = 4 * batch * seq * seq * h * layers
    return dense + attention + 2 * tokens * h * h  # + the colbert head


def _table(r: dict) -> str:
    base = r["rows"]["pytorch-fp16"]
    lines = [f"GPU {r['card']}, {r['date']}, commit {r['commit']}, shape {r['shape']}, "
             f"fp16 matmul {r['matmul_fp16_tflops']:.0f} TFLOP/s (measured)", "",
             "| backend | " + " | ".join(f"b{k.replace('x', ' x ')}" for k in base) + " | b32x512 TFLOP/s |",
             "|---" * (len(base) + 2) + "|"]
    for name, row in r["rows"].items():
        cells = [f"{row[k] * 1e3:.2f} ms ({base[k] / row[k]:.2f}x)" for k in base]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['batch32x512_tflops'][name]:.0f} |")
    for name, why in r["skipped"].items():
        lines.append(f"| {name} | skipped: {why} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
