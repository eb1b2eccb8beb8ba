"""`m3rt bench` once per x86-64 CPU class reachable on this machine: natively, then with the classes above each
mask hidden (m3rt/testing/isa_mask.c), so onnxruntime, PyTorch and numpy run the kernels they pick on that class.

    python bench/isa_classes.py [--model DIR | --preset bge-m3-random] [--work-dir DIR] [--out bench/results]

Every class's run is side by side (PyTorch, m3rt fp32, m3rt int8 on the same inputs, one after the other), so its
ratios hold; its absolute times are this CPU's, not those of a real CPU of that class (clock, caches and cores
differ). Also per class: the int8 graph at 1 x 128 with and without onnxruntime's exact-int8 setting
(session.x64quantprecision), alternated, to price it where the runtime turns it on. Writes cpu-isa-<class>.{json,md}
per class and cpu-isa-classes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bge-m3 (XLM-R large): 24 layers of 4 h^2 + 2 h * 4h weights, h = 1024; attention adds 4 L h per layer per token.
LAYERS, HIDDEN = 24, 1024

PRECISION_PAIR = """
import json, sys, time
import numpy as np, onnxruntime as ort
from m3rt.runtime.ort_session import int8_saturates_here
graph = sys.argv[1]
ids = np.random.default_rng(0).integers(5, 30000, size=(1, 128)).astype(np.int64)
ids[0, 0], ids[0, -1] = 0, 2
feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
sessions = {}
for value in ("0", "1"):
    o = ort.SessionOptions(); o.enable_cpu_mem_arena = False; o.enable_mem_pattern = False
    o.add_session_config_entry("session.x64quantprecision", value)
    sessions[value] = ort.InferenceSession(graph, o, providers=["CPUExecutionProvider"])
    sessions[value].run(None, feed)
times = {"0": [], "1": []}
for _ in range(5):
    for value, s in sessions.items():
        t = time.perf_counter(); s.run(None, feed); times[value].append(time.perf_counter() - t)
print(json.dumps({"default_s": float(np.median(times["0"])), "exact_s": float(np.median(times["1"])),
                  "runtime_sets_it": int8_saturates_here()}))
"""


# The class's attainable matrix-product rates, through onnxruntime's own kernels (MLAS): one fp32 MatMul and
# one MatMulInteger (u8 activations x s8 constant weights, as the int8 graph's) of an FFN-shaped product,
# 512 x 1024 x 4096, on all cores.
PEAKS = """
import json, time
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
M, K, N = 512, 1024, 4096
rng = np.random.default_rng(0)

def graph(int8):
    if int8:
        w = numpy_helper.from_array(rng.integers(-127, 128, (K, N), dtype=np.int8), "w")
        node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
        a, y = TensorProto.UINT8, TensorProto.INT32
    else:
        w = numpy_helper.from_array(rng.standard_normal((K, N)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        a, y = TensorProto.FLOAT, TensorProto.FLOAT
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", a, [M, K])],
                          [helper.make_tensor_value_info("y", y, [M, N])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

def rate(model, feed, precision="0"):
    o = ort.SessionOptions(); o.add_session_config_entry("session.x64quantprecision", precision)
    s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
    for _ in range(3): s.run(None, feed)
    ts = []
    for _ in range(15):
        t = time.perf_counter(); s.run(None, feed); ts.append(time.perf_counter() - t)
    return 2 * M * K * N / float(np.median(ts)) / 1e9

fp32 = rate(graph(False), {"a": rng.standard_normal((M, K)).astype(np.float32)})
u8 = {"a": rng.integers(0, 256, (M, K), dtype=np.uint8)}
print(json.dumps({"fp32_gflops": fp32, "int8_gops": rate(graph(True), u8),
                  "int8_exact_gops": rate(graph(True), u8, "1")}))
"""


def flops(tokens: int) -> float:
    per_token = 2 * LAYERS * (4 * HIDDEN**2 + 8 * HIDDEN**2) + 4 * LAYERS * tokens * HIDDEN
    return per_token * tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a BAAI/bge-m3-layout directory (default: the bge-m3-random preset)")
    ap.add_argument("--work-dir", help="m3rt bench's model and artifact cache")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--classes", default="native,avx512-vnni,avx512,avx2")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--reuse", action="store_true", help="keep a class's cpu-isa-<class>.json from an earlier run")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from m3rt.runtime.cpu import detect
    from m3rt.testing import isa_mask

    native = detect().cls
    lib = isa_mask.build(Path(tempfile.gettempdir()) / "m3rt-isa-mask")
    source = ["--model", args.model] if args.model else ["--preset", "bge-m3-random"]
    rows = []
    for cls in args.classes.split(","):
        env = None if cls == "native" else isa_mask.environment(cls, lib)
        name = f"cpu-isa-{native if cls == 'native' else cls}"
        cmd = [sys.executable, "-m", "m3rt.cli", "bench", *source, "--out", str(args.out), "--name", name,
               "--backends", "pytorch,m3rt-fp32,m3rt-int8", "--batch-sizes", "1", "--seq-lengths", "128,512",
               "--sweep-lengths", "128,512", "--corpus-size", "40", "--reps", str(args.reps),
               "--time-budget-s", "30"]
        if args.work_dir:
            cmd += ["--work-dir", args.work_dir]
        print(f"== {name}", flush=True)
        if not (args.reuse and (args.out / f"{name}.json").is_file()):
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        result = json.loads((args.out / f"{name}.json").read_text())
        int8_graph = Path(result["artifacts"]["m3rt-int8"]) / "model.onnx"
        done = subprocess.run([sys.executable, "-c", PRECISION_PAIR, str(int8_graph)], env=env, check=True,
                              capture_output=True, text=True)
        peaks = subprocess.run([sys.executable, "-c", PEAKS], env=env, check=True, capture_output=True, text=True)
        rows.append({"class": result["machine"]["cpu_class"], "masked": bool(result["machine"].get("isa_mask")),
                     "result": name, "commit": result["git_commit"], "cpu": result["machine"]["cpu"],
                     "latency": result["latency"], "corpus": result["corpus"],
                     "precision_mode": json.loads(done.stdout.strip().splitlines()[-1]),
                     "peaks": json.loads(peaks.stdout.strip().splitlines()[-1])})
    (args.out / "cpu-isa-classes.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "cpu-isa-classes.md").write_text(markdown(rows, native))
    print((args.out / "cpu-isa-classes.md").read_text())


def markdown(rows: list[dict], native: str) -> str:
    first = rows[0]
    lines = [
        "# m3rt on each x86-64 CPU class (bge-m3 shape, random weights)",
        "",
        f"{first['cpu']}, 2 cores, native class **{native}**; commit {first['commit']}. The other classes are this",
        "CPU with CPUID masked down to them (m3rt/testing/isa_mask.c): onnxruntime, PyTorch (oneDNN) and numpy pick",
        "that class's kernels and run them here. Ratios are side by side within a class's run; absolute times are",
        "this CPU's, not a real CPU of that class. int8 on classes without VNNI runs with onnxruntime's exact U8U8",
        "kernels (the runtime sets session.x64quantprecision there; its cost is the last column).",
        "",
    ]
    for row in rows:
        lat = {(r["seq_length"], r["backend"]): r for r in row["latency"]}
        corpus = {r["backend"]: r for r in row["corpus"]}
        pm, pk = row["precision_mode"], row["peaks"]
        label = f"{row['class']} ({'CPUID-masked' if row['masked'] else 'native'})"
        lines += [f"## {label}: {row['result']}.md", "",
                  "| workload | PyTorch fp32 | m3rt fp32 | m3rt int8 |", "|---|---:|---:|---:|"]
        for n in (128, 512):
            t = [lat[(n, b)]["p50_s"] for b in ("pytorch", "m3rt-fp32", "m3rt-int8")]
            g = [flops(n) / x / 1e9 for x in t]
            lines.append(f"| 1 x {n} tokens, p50 | {t[0] * 1e3:,.0f} ms ({g[0]:.0f} GFLOP/s) | "
                         f"{t[1] * 1e3:,.0f} ms, **{t[0] / t[1]:.2f}x** ({g[1]:.0f}) | "
                         f"{t[2] * 1e3:,.0f} ms, **{t[0] / t[2]:.2f}x** ({g[2]:.0f} GOP/s) |")
        c = [corpus[b]["tokens_per_s"] for b in ("pytorch", "m3rt-fp32", "m3rt-int8")]
        lines += [f"| corpus, 40 texts of 8-512 tokens | {c[0]:.0f} tok/s | {c[1]:.0f} tok/s, {c[1] / c[0]:.2f}x | "
                  f"{c[2]:.0f} tok/s, {c[2] / c[0]:.2f}x |", "",
                  f"int8 graph at 1 x 128, onnxruntime's default kernels {pm['default_s'] * 1e3:.0f} ms, exact U8U8 "
                  f"{pm['exact_s'] * 1e3:.0f} ms ({pm['exact_s'] / pm['default_s']:.2f}x the time); the runtime "
                  f"{'sets' if pm['runtime_sets_it'] else 'does not set'} it on this class.", "",
                  f"Attainable here through onnxruntime's kernels (512 x 1024 x 4096): fp32 MatMul "
                  f"{pk['fp32_gflops']:.0f} GFLOP/s, int8 MatMulInteger {pk['int8_gops']:.0f} GOP/s "
                  f"({pk['int8_exact_gops']:.0f} with the exact setting).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
