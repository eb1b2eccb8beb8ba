"""Compile the MaxSim Triton kernels for an H100 (sm_90a) without a GPU; report registers/spills.

Catches compile errors the interpreter lets through and checks register pressure of candidate
tile configs before spending GPU time. Needs only triton (its bundled ptxas); run without
TRITON_INTERPRET (the interpreter replaces tl's own jit functions, so real compiles fail there).

    PYTHONPATH=. python bench/device/compile_sm90.py            # default cases
    PYTHONPATH=. python bench/device/compile_sm90.py --json     # machine-readable
Exit status 1 if any case fails to compile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings

os.environ.pop("TRITON_INTERPRET", None)
warnings.filterwarnings("ignore", category=UserWarning)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from m3rt.kernels import maxsim_triton as mt  # noqa: E402

# dtype, D, PAIRS, FUSED, BLOCK_M, BLOCK_N, BLOCK_D, num_warps, num_stages, FLATTEN
CASES = [
    ("fp16", 1024, False, True, 32, 64, 128, 4, 3, False),  # 1 query, memory-bound (default)
    ("fp16", 1024, False, True, 32, 128, 128, 4, 3, False),
    ("fp16", 1024, False, True, 32, 64, 128, 4, 3, True),
    ("fp16", 1024, False, False, 128, 128, 64, 4, 3, False),  # many queries, wgmma (default)
    ("fp16", 1024, False, False, 128, 64, 64, 8, 3, False),
    ("fp16", 128, False, False, 128, 128, 64, 4, 3, False),
    ("bf16", 1024, False, False, 128, 64, 64, 8, 3, True),
    ("bf16", 128, True, True, 32, 64, 128, 4, 3, False),
    ("fp32", 100, True, False, 64, 32, 64, 4, 2, False),
]
ROW_TYPES = {"q_ptr": None, "d_ptr": None, "q_off_ptr": "*i64", "d_off_ptr": "*i64", "out_ptr": "*fp32",
             "n_row_tiles": "i32", "q_rows_total": "i32", "stride_qr": "i32", "stride_dr": "i32"}
SEG_TYPES = {"rowmax_ptr": "*fp32", "q_off_ptr": "*i64", "out_ptr": "*fp32", "n_cols": "i32", "row_stride": "i32",
             "n_col_blocks": "i32"}


def compile_kernel(kernel, types: dict, constexprs: dict, num_warps: int, num_stages: int, aligned=()):
    """aligned: argument names the JIT would mark 16-divisible at launch (torch data pointers are;
    so are row strides when d % 16 == 0). Without the hints loads are not vectorised or pipelined."""
    sig = {name: "constexpr" if name in constexprs else types[name] for name in kernel.arg_names}
    attrs = {(kernel.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    src = ASTSource(kernel, sig, constexprs, attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options=dict(num_warps=num_warps, num_stages=num_stages))


def ptxas_usage(ptx: str) -> dict:
    """Registers and spill bytes from the bundled ptxas (the newest one that reads this PTX)."""
    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        for name in ("ptxas-blackwell", "ptxas"):
            exe = os.path.join(bindir, name)
            if not os.path.exists(exe):
                continue
            r = subprocess.run([exe, "-v", "--gpu-name=sm_90a", f.name, "-o", os.devnull],
                               capture_output=True, text=True)
            regs = re.search(r"Used (\d+) registers", r.stderr)
            spill = re.search(r"(\d+) bytes spill stores", r.stderr)
            if r.returncode == 0 and regs:
                return {"regs": int(regs.group(1)), "spill_bytes": int(spill.group(1)) if spill else None}
        return {}
    finally:
        os.unlink(f.name)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results, failed = [], 0
    for dt, d, pairs, fused, bm, bn, bd, warps, stages, flatten in CASES:
        types = dict(ROW_TYPES, q_ptr=f"*{dt}", d_ptr=f"*{dt}")
        consts = dict(stride_qd=1, stride_dd=1, D=d, PAIRS=pairs, FUSED=fused, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd,
                      PRECISION="ieee" if dt == "fp32" else "tf32", UPCAST=False, FLATTEN=flatten)
        row = dict(kernel="rows", dtype=dt, d=d, pairs=pairs, fused=fused, block=(bm, bn, bd), warps=warps,
                   stages=stages, flatten=flatten)
        try:
            aligned = ["q_ptr", "d_ptr", "q_off_ptr", "d_off_ptr", "out_ptr"]
            aligned += ["stride_qr", "stride_dr"] if d % 16 == 0 else []
            k = compile_kernel(mt._maxsim_rows_kernel, types, consts, warps, stages, aligned)
            ptx = k.asm["ptx"]
            row.update(ok=True, smem=k.metadata.shared, mma="wgmma" if "wgmma" in ptx else
                       ("mma" if "mma.sync" in ptx else "fma"), **ptxas_usage(ptx))
        except Exception as e:  # report every case, fail at the end
            row.update(ok=False, error=f"{type(e).__name__}: {str(e)[-400:]}")
            failed += 1
        results.append(row)
    try:
        compile_kernel(mt._segment_mean_kernel, SEG_TYPES, dict(BLOCK_C=64, BLOCK_R=32), 4, 2,
                       ["rowmax_ptr", "q_off_ptr", "out_ptr"])
        results.append(dict(kernel="segment_mean", ok=True))
    except Exception as e:
        results.append(dict(kernel="segment_mean", ok=False, error=f"{type(e).__name__}: {str(e)[-400:]}"))
        failed += 1
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(" ".join(f"{k}={v}" for k, v in r.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
