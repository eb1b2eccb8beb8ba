"""MaxSim Triton kernels on an NVIDIA GPU: correctness, then speed against the hardware's limits.

1. correctness: Triton kernels vs a float64 reference (fp32 / fp16 / bf16, d in 100/128/1024,
   block-edge and empty documents, maxsim / maxsim_many / maxsim_pairs).
2. limits: device-to-device copy bandwidth (2 GB tensor.copy_) and fp16 matmul rate (8192^3).
3. speed (triton.testing.do_bench, median):
   (a) 1 query x 32 tokens vs up to 100k docs (32..512 tokens), d=1024 fp16: GB/s read vs copy;
   (b) 128 queries x 32 tokens vs 10k docs, d=1024 fp16: TFLOP/s vs matmul;
   (c) the same at d=128 when time allows;
   each with the default tile config and a small sweep, plus a padded torch einsum baseline on
   the same 10k docs.
Writes $OUT/maxsim_gpu.json when OUT is set; prints the summary table last.

--smoke runs the same code on the CPU through Triton's interpreter with tiny shapes (wall-clock
timer instead of do_bench): a check of this script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

SMOKE = "--smoke" in sys.argv
if SMOKE:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton jit-decorates the kernels

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402

from m3rt.bench.harness import run_record, time_calls  # noqa: E402
from m3rt.kernels import maxsim, maxsim_many, maxsim_pairs  # noqa: E402
from m3rt.kernels import maxsim_triton as mt  # noqa: E402

T0 = time.time()
DEV = "cpu" if SMOKE else "cuda"
LOG: list[str] = []


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def bench(fn) -> float:
    """Median seconds of fn()."""
    if SMOKE:
        return float(np.median(time_calls(fn, 3, warmup=1)))
    try:
        ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    except TypeError:  # older signature
        ms = triton.testing.do_bench(fn, warmup=25, rep=100, quantiles=[0.5])
    return float(ms) / 1e3


# --- data -------------------------------------------------------------------------------------


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=off[1:])
    return off


def rand(n: int, d: int, dtype, gen) -> torch.Tensor:
    """Entries ~ N(0, 1/d) (unit-scale dot products); generated in place, no temporary copy."""
    return torch.randn(n, d, device=DEV, dtype=dtype, generator=gen).div_(d**0.5)


# --- 1. correctness ---------------------------------------------------------------------------


def ref_many(q, q_off, p, d_off) -> np.ndarray:
    q64, p64 = q.double(), p.double()
    out = np.zeros((len(q_off) - 1, len(d_off) - 1))
    for j in range(len(d_off) - 1):
        if d_off[j + 1] > d_off[j]:
            rowmax = (q64 @ p64[d_off[j] : d_off[j + 1]].T).amax(dim=1).cpu().numpy()
            for i in range(len(q_off) - 1):
                out[i, j] = rowmax[q_off[i] : q_off[i + 1]].mean()
    return out


def ref_pairs(q, q_off, p, d_off) -> np.ndarray:
    q64, p64 = q.double(), p.double()
    return np.array([
        (q64[q_off[i] : q_off[i + 1]] @ p64[d_off[i] : d_off[i + 1]].T).amax(dim=1).mean().item()
        if d_off[i + 1] > d_off[i] else 0.0
        for i in range(len(q_off) - 1)
    ])


def correctness(gen) -> list[dict]:
    results = []
    tol = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-3}
    # Every (dtype, d) is a fresh compile (~1-3 s each): d=100 (masked d tail) only for fp16.
    dims = {torch.float32: (128, 1024), torch.float16: (100, 128, 1024), torch.bfloat16: (128, 1024)}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for d in dims[dtype] if not SMOKE else (100, 128):
            bn = mt.default_config(32, d, dtype)["BLOCK_N"]
            lengths = np.array([bn - 1, bn, bn + 1, 1, 0, 2 * bn + 1, 0, 512 if not SMOKE else 70])
            d_off = offsets_of(lengths)
            p = rand(int(d_off[-1]), d, dtype, gen)
            q_lengths = np.array([32, 1, 33, 70, 20])  # 156 rows: several 128-row tiles
            q_off = offsets_of(q_lengths)
            qs = rand(int(q_off[-1]), d, dtype, gen)
            checks = {
                "maxsim": (maxsim(qs[:32], p, d_off).cpu().numpy(), ref_many(qs[:32], [0, 32], p, d_off)[0]),
                "maxsim_many": (maxsim_many(qs, q_off, p, d_off).cpu().numpy(), ref_many(qs, q_off, p, d_off)),
            }
            pq_off = offsets_of(np.array([32, 1, 33, 200, 5]))  # 200 rows: unfused pairs path
            pq = rand(int(pq_off[-1]), d, dtype, gen)
            pd_off = d_off[:6]
            pd = p[: int(pd_off[-1])]
            checks["maxsim_pairs"] = (maxsim_pairs(pq, pq_off, pd, pd_off).cpu().numpy(),
                                      ref_pairs(pq, pq_off, pd, pd_off))
            if dtype == torch.float16 and d == 128:  # non-contiguous docs
                big = rand(2 * int(d_off[-1]), 2 * d, dtype, gen)
                nc = big[::2, ::2]
                checks["non_contiguous"] = (maxsim(qs[:32], nc, d_off).cpu().numpy(),
                                            ref_many(qs[:32], [0, 32], nc, d_off)[0])
            for name, (out, ref) in checks.items():
                scale = max(1.0, float(np.abs(ref).max()))
                err = float(np.abs(out.astype(np.float64) - ref).max()) / scale
                ok = err <= tol[dtype]
                results.append(dict(case=name, dtype=str(dtype).replace("torch.", ""), d=d, max_err=err, ok=ok))
                if not ok:
                    log(f"FAIL {name} {dtype} d={d}: max err {err:.2e} > {tol[dtype]:.0e}")
    n_bad = sum(not r["ok"] for r in results)
    log(f"correctness: {len(results) - n_bad}/{len(results)} ok")
    return results


# --- 2. hardware limits -----------------------------------------------------------------------


def limits() -> dict:
    n = (2 << 30) // 2 if not SMOKE else 1 << 20  # 2 GB of fp16
    src = torch.ones(n, dtype=torch.float16, device=DEV)
    dst = torch.empty_like(src)
    t = bench(lambda: dst.copy_(src))
    copy_gbs = 2 * src.numel() * 2 / t / 1e9  # read + write
    del src, dst
    m = 8192 if not SMOKE else 256
    a = torch.randn(m, m, device=DEV).to(torch.float16 if not SMOKE else torch.float32)
    b = torch.randn(m, m, device=DEV).to(a.dtype)
    t = bench(lambda: a @ b)
    mm_tflops = 2 * m**3 / t / 1e12
    del a, b
    log(f"copy {copy_gbs:,.0f} GB/s (read+write), fp16 matmul {mm_tflops:,.0f} TFLOP/s")
    return dict(copy_gbs=copy_gbs, matmul_tflops=mm_tflops)


# --- 3. speed ---------------------------------------------------------------------------------


def padded_einsum(q_all, n_q, pad, mask, chunk):
    """Baseline: docs stored padded [n, L, d]; queries [n_q, nq, d]; chunked over docs."""
    nq = q_all.shape[0] // n_q
    out = torch.empty(n_q, pad.shape[0], dtype=torch.float32, device=pad.device)
    for lo in range(0, pad.shape[0], chunk):
        sim = torch.matmul(q_all, pad[lo : lo + chunk].flatten(0, 1).T)  # [n_q*nq, chunk*L]
        sim = sim.view(q_all.shape[0], -1, pad.shape[1])
        sim.masked_fill_(~mask[lo : lo + chunk][None], float("-inf"))
        out[:, lo : lo + chunk] = sim.amax(dim=2).float().view(n_q, nq, -1).mean(dim=1)
    return out


def make_padded(docs, d_off, n):
    lengths = torch.from_numpy(np.diff(d_off[: n + 1])).to(DEV)
    L = int(lengths.max())
    mask = torch.arange(L, device=DEV)[None, :] < lengths[:, None]
    pad = torch.zeros(n, L, docs.shape[1], dtype=docs.dtype, device=DEV)
    pad[mask] = docs[: int(d_off[n])]
    return pad, mask


def run_case(name, q_all, q_off, docs, d_off, configs, lim, baseline_docs, record):
    """Time the kernel (default + sweep) on all docs and, with the baseline, on the first
    baseline_docs docs."""
    n_q, n_docs = len(q_off) - 1, len(d_off) - 1
    d = docs.shape[1]
    tokens = int(d_off[-1])
    q_dev = torch.as_tensor(q_off, device=DEV)
    d_dev = torch.as_tensor(d_off, device=DEV)
    bytes_read = docs.numel() * docs.element_size() + q_all.numel() * q_all.element_size() + 8 * (n_docs + 1)
    flops = 2.0 * q_all.shape[0] * tokens * d
    res = dict(case=name, n_queries=n_q, query_rows=q_all.shape[0], n_docs=n_docs, doc_tokens=tokens, d=d,
               dtype=str(docs.dtype).replace("torch.", ""), bytes_read=bytes_read, flops=flops, configs=[])
    ref = None
    for cfg in configs:
        label = "default" if not cfg else ",".join(f"{k}={v}" for k, v in cfg.items())
        if time.time() - T0 > BUDGET_S and cfg:
            log(f"{name}: time budget reached, skipping {label}")
            continue
        try:
            fn = lambda: mt.maxsim_many_triton(q_all, q_dev, docs, d_dev, config=cfg)  # noqa: E731
            out = fn()
            if ref is None:
                ref = out
            agree = float((out - ref).abs().max()) if out.shape == ref.shape else float("nan")
            t = bench(fn)
        except Exception as e:  # a config can fail to compile (smem) on some GPUs: record and go on
            res["configs"].append(dict(config=label, error=f"{type(e).__name__}: {str(e)[:200]}"))
            log(f"{name} {label}: {type(e).__name__}")
            continue
        row = dict(config=label, time_s=t, docs_per_s=n_docs / t, gbs=bytes_read / t / 1e9,
                   tflops=flops / t / 1e12, max_diff_vs_default=agree)
        row["pct_copy_bw"] = 100 * row["gbs"] / lim["copy_gbs"]
        row["pct_matmul"] = 100 * row["tflops"] / lim["matmul_tflops"]
        res["configs"].append(row)
        log(f"{name} {label}: {t * 1e3:.2f} ms, {row['gbs']:,.0f} GB/s ({row['pct_copy_bw']:.0f}% copy), "
            f"{row['tflops']:.1f} TFLOP/s ({row['pct_matmul']:.0f}% matmul)")
    ok = [c for c in res["configs"] if "time_s" in c]
    res["best"] = min(ok, key=lambda c: c["time_s"]) if ok else None
    res["default"] = ok[0] if ok and ok[0]["config"] == "default" else None

    # Baseline on the first baseline_docs docs (padded storage does not fit for all of them).
    nb = min(baseline_docs, n_docs)
    if nb and time.time() - T0 < BUDGET_S + 30:
        pad, mask = make_padded(docs, d_off, nb)
        sub_off = d_off[: nb + 1]
        sub = docs[: int(sub_off[-1])]
        chunk = max(1, (1 << 28) // (q_all.shape[0] * pad.shape[1] * 2))  # ~256 MB similarity per chunk
        sub_dev = torch.as_tensor(sub_off, device=DEV)
        t_tri = bench(lambda: mt.maxsim_many_triton(q_all, q_dev, sub, sub_dev))
        base = padded_einsum(q_all, n_q, pad, mask, chunk)
        tri = mt.maxsim_many_triton(q_all, q_dev, sub, sub_dev)
        diff = float((base - tri).abs().max())
        t_pad = bench(lambda: padded_einsum(q_all, n_q, pad, mask, chunk))
        res["baseline"] = dict(n_docs=nb, padded_len=pad.shape[1], chunk_docs=chunk, torch_s=t_pad, triton_s=t_tri,
                               torch_docs_per_s=nb / t_pad, triton_docs_per_s=nb / t_tri, speedup=t_pad / t_tri,
                               max_abs_diff=diff)
        log(f"{name} baseline on {nb} docs: torch padded {nb / t_pad:,.0f} docs/s, triton {nb / t_tri:,.0f} "
            f"docs/s ({t_pad / t_tri:.2f}x), max diff {diff:.1e}")
        del pad, mask
    record.append(res)


def lengths_for(n, gen_np):
    return gen_np.integers(1, 41, size=n) if SMOKE else gen_np.integers(32, 513, size=n)


# Smoke: the interpreter runs every program in Python, so shapes shrink (the code path is the same).
D_BIG, D_SMALL, NQ_B = (64, 32, 4) if SMOKE else (1024, 128, 128)


def main() -> None:
    global BUDGET_S
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--docs-a", type=int, default=100_000)
    ap.add_argument("--docs-b", type=int, default=10_000)
    ap.add_argument("--budget-s", type=float, default=200, help="skip sweep configs / d=128 after this")
    args = ap.parse_args()
    BUDGET_S = args.budget_s
    if SMOKE:
        args.docs_a, args.docs_b = 40, 12
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device (use --smoke for an interpreter check of this script)")

    record = run_record(("m3rt", "torch", "triton", "numpy"))
    info = dict(torch=torch.__version__, triton=triton.__version__, python=platform.python_version(),
                device=torch.cuda.get_device_name() if not SMOKE else "cpu (interpreter smoke)",
                capability=torch.cuda.get_device_capability() if not SMOKE else None, smoke=SMOKE,
                git_commit=record["git_commit"], date=record["date"], host=record["machine"])
    log(f"{info['device']} torch {info['torch']} triton {info['triton']}")
    gen = torch.Generator(device=DEV).manual_seed(0)
    gen_np = np.random.default_rng(0)
    out = dict(info=info)
    out["correctness"] = correctness(gen)
    out["limits"] = lim = limits()
    record: list[dict] = []
    out["cases"] = record

    # Data for (a) and (b): one packed fp16 array; (b) uses its first docs_b docs.
    d = D_BIG
    n_a = args.docs_a
    lengths = lengths_for(n_a, gen_np)
    if not SMOKE:
        free = torch.cuda.mem_get_info()[0]
        # Docs + the padded baseline's 10k x 512 x d copy + 3 GB of headroom must fit.
        need_extra = 10_000 * 512 * d * 2 + (3 << 30)
        while n_a > args.docs_b and int(lengths[:n_a].sum()) * d * 2 + need_extra > free:
            n_a = int(n_a * 0.9)
        if n_a < args.docs_a:
            log(f"(a) scaled to {n_a} docs to fit in memory")
    d_off = offsets_of(lengths[:n_a])
    docs = rand(int(d_off[-1]), d, torch.float16, gen)
    q1 = rand(32, d, torch.float16, gen)
    sweep_a = [{}, dict(BLOCK_N=128), dict(BLOCK_N=32), dict(FLATTEN=True), dict(num_stages=4),
               dict(BLOCK_D=64, num_stages=4)]
    if SMOKE:
        sweep_a = sweep_a[:2]
    run_case(f"a: 1q x {n_a} docs d={d} fp16", q1, np.array([0, 32]), docs, d_off, sweep_a, lim,
             10_000 if not SMOKE else 10, record)

    n_b = args.docs_b
    b_off = d_off[: n_b + 1]
    docs_b = docs[: int(b_off[-1])]
    qb = rand(NQ_B * 32, d, torch.float16, gen)
    qb_off = np.arange(0, NQ_B * 32 + 1, 32, dtype=np.int64)
    sweep_b = [{}, dict(BLOCK_N=64, num_warps=8), dict(BLOCK_N=128, num_warps=8), dict(BLOCK_N=256, num_warps=8),
               dict(FLATTEN=True), dict(BLOCK_M=64, num_warps=4), dict(num_stages=4), dict(num_stages=2)]
    if SMOKE:
        sweep_b = sweep_b[:2]
    run_case(f"b: {NQ_B}q x {n_b} docs d={d} fp16", qb, qb_off, docs_b, b_off, sweep_b, lim, n_b, record)
    del docs, docs_b

    if time.time() - T0 < BUDGET_S:  # (c) d=128, defaults only
        d = D_SMALL
        d_off = offsets_of(lengths[: args.docs_a])
        docs = rand(int(d_off[-1]), d, torch.float16, gen)
        run_case(f"c1: 1q x {args.docs_a} docs d={d} fp16", rand(32, d, torch.float16, gen), np.array([0, 32]), docs, d_off,
                 [{}, dict(BLOCK_N=128)], lim, 0, record)
        b_off = d_off[: n_b + 1]
        run_case(f"c2: {NQ_B}q x {n_b} docs d={d} fp16", rand(NQ_B * 32, d, torch.float16, gen), qb_off,
                 docs[: int(b_off[-1])], b_off, [{}, dict(BLOCK_N=128), dict(BLOCK_N=128, num_warps=4)], lim, 0,
                 record)
        del docs

    out["elapsed_s"] = time.time() - T0
    if os.environ.get("OUT"):
        path = os.path.join(os.environ["OUT"], "maxsim_gpu.json" if not SMOKE else "maxsim_gpu_smoke.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1, default=str)
        log(f"wrote {path}")
    summary(out)


def summary(out: dict) -> None:
    lim = out["limits"]
    bad = [r for r in out["correctness"] if not r["ok"]]
    print()
    print(f"== MaxSim Triton on {out['info']['device']} (torch {out['info']['torch']}, triton {out['info']['triton']})"
          + ("  [SMOKE: interpreter, not a measurement]" if SMOKE else ""))
    print(f"correctness: {len(out['correctness']) - len(bad)}/{len(out['correctness'])} ok"
          + (f"  FAILED: {[(r['case'], r['dtype'], r['d']) for r in bad]}" if bad else ""))
    print(f"copy bandwidth {lim['copy_gbs']:,.0f} GB/s, fp16 matmul {lim['matmul_tflops']:,.0f} TFLOP/s")
    print(f"{'case':34s} {'config':28s} {'ms':>8s} {'docs/s':>12s} {'GB/s':>7s} {'%copy':>6s} {'TFLOP/s':>8s} "
          f"{'%mm':>5s} {'vs torch':>8s}")
    for c in out["cases"]:
        sp = f"{c['baseline']['speedup']:.2f}x" if c.get("baseline") else "-"
        for tag in ("default", "best"):
            r = c.get(tag)
            if r is None or (tag == "best" and r is c.get("default")):
                continue
            print(f"{c['case'][:34]:34s} {(tag + ': ' + r['config'])[:28]:28s} {r['time_s'] * 1e3:8.2f} "
                  f"{r['docs_per_s']:12,.0f} {r['gbs']:7,.0f} {r['pct_copy_bw']:5.0f}% {r['tflops']:8.1f} "
                  f"{r['pct_matmul']:4.0f}% {sp:>8s}")


BUDGET_S = 200.0

if __name__ == "__main__":
    main()
