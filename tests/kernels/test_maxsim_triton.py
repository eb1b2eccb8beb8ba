"""MaxSim Triton kernels against a float64 reference.

On a machine without CUDA the kernels run in Triton's interpreter on CPU tensors. TRITON_INTERPRET
is read when @triton.jit decorates a function, triton's own helpers (tl.max, ...) included, and again
at launch: so it is set here, and left set, before triton is first imported. If something imported
triton earlier in this process (import torch._dynamo or torch.onnx does), the module is skipped:
run it in its own pytest process.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the Triton path takes torch tensors")
CUDA = torch.cuda.is_available()
if not CUDA:
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU, and triton was imported before TRITON_INTERPRET=1 could be set; "
                    "run tests/kernels/test_maxsim_triton.py in its own pytest process", allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton", reason="triton is not installed")

from m3rt.kernels import maxsim, maxsim_many, maxsim_pairs, rerank  # noqa: E402
from m3rt.kernels import maxsim_triton  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# fp32: exact products, fp32 sums. fp16/bf16: the reference uses the same rounded inputs; only the
# fp32 accumulation order differs (tensor cores may round partial sums a little more).
TOL = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-4}
if CUDA:
    TOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-3}


def _t(x: np.ndarray, dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=DEVICE, dtype=dtype)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().cpu().numpy()


def test_interpreter_or_gpu():
    assert maxsim_triton.INTERPRETED != CUDA


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [64, 100, 128, 1024])
def test_block_edges(rng, vectors, packed, ref_many, check, dtype, d):
    block_n = maxsim_triton.default_config(32, d, dtype)["BLOCK_N"]
    lengths = [block_n - 1, block_n, block_n + 1, 1, 0, 2 * block_n + 1, 0]
    docs, d_off = packed(rng, lengths, d)
    query = vectors(rng, 32, d)
    q, p = _t(query, dtype), _t(docs, dtype)
    out = maxsim(q, p, d_off, backend="triton")
    assert out.dtype == torch.float32 and out.device == p.device and out.shape == (len(lengths),)
    ref = ref_many(_np(q), [0, 32], _np(p), d_off)[0]
    check(_np(out), ref, TOL[dtype])
    assert out[4].item() == 0.0 and out[6].item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_token_query_and_docs(rng, vectors, packed, ref_many, check, dtype):
    docs, d_off = packed(rng, [1, 0, 1, 1], 64)
    q, p = _t(vectors(rng, 1, 64), dtype), _t(docs, dtype)
    out = maxsim(q, p, d_off, backend="triton")
    check(_np(out), ref_many(_np(q), [0, 1], _np(p), d_off)[0], TOL[dtype])


def test_all_docs_empty(rng, vectors):
    q = _t(vectors(rng, 4, 32), torch.float16)
    p = torch.zeros((0, 32), dtype=torch.float16, device=DEVICE)
    out = maxsim(q, p, [0, 0, 0], backend="triton")
    assert out.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_m", [16, None])
def test_maxsim_many(rng, packed, ref_many, check, dtype, block_m):
    # 150 query rows > 128 (several row tiles) and queries straddling tile borders.
    q_lengths = [1, 31, 33, 16, 50, 19]
    queries, q_off = packed(rng, q_lengths, 64)
    docs, d_off = packed(rng, [70, 0, 1, 64, 65, 200], 64)
    q, p = _t(queries, dtype), _t(docs, dtype)
    if block_m is None:
        out = maxsim_many(q, q_off, p, d_off, backend="triton")
    else:
        out = maxsim_triton.maxsim_many_triton(q, q_off, p, d_off, config=dict(BLOCK_M=block_m))
    assert out.shape == (6, 6) and out.dtype == torch.float32
    check(_np(out), ref_many(_np(q), q_off, _np(p), d_off), TOL[dtype])


def test_single_query_over_several_row_tiles(rng, vectors, packed, ref_many, check):
    docs, d_off = packed(rng, [40, 0, 7], 32)
    q, p = _t(vectors(rng, 40, 32), torch.float16), _t(docs, torch.float16)
    out = maxsim_triton.maxsim_many_triton(q, np.array([0, 40]), p, d_off, config=dict(BLOCK_M=16))
    check(_np(out[0]), ref_many(_np(q), [0, 40], _np(p), d_off)[0], TOL[torch.float16])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("long_query", [False, True])
def test_maxsim_pairs(rng, packed, ref_pairs, check, dtype, long_query):
    q_lengths = [3, 32, 1, 17, 9] + ([130] if long_query else [])  # 130 rows: unfused path
    queries, q_off = packed(rng, q_lengths, 128)
    docs, d_off = packed(rng, [10, 0, 129, 1, 64] + ([5] if long_query else []), 128)
    q, p = _t(queries, dtype), _t(docs, dtype)
    out = maxsim_pairs(q, q_off, p, d_off, backend="triton")
    assert out.shape == (len(q_lengths),)
    check(_np(out), ref_pairs(_np(q), q_off, _np(p), d_off), TOL[dtype])


@pytest.mark.parametrize("layout", ["strided_rows", "strided_cols", "transposed_twice"])
def test_non_contiguous(rng, vectors, ref_many, check, layout):
    d, lengths = 64, [130, 0, 5]
    off = np.concatenate([[0], np.cumsum(lengths)])
    big = _t(vectors(rng, 2 * int(off[-1]), 2 * d), torch.float16)
    docs = {
        "strided_rows": big[::2, :d],
        "strided_cols": big[: off[-1], ::2],
        "transposed_twice": big[: off[-1], :d].t().contiguous().t(),
    }[layout]
    q = _t(vectors(rng, 9, d), torch.float16).t().contiguous().t()
    assert not docs.is_contiguous() and not q.is_contiguous()
    out = maxsim(q, docs, off, backend="triton")
    check(_np(out), ref_many(_np(q), [0, 9], _np(docs), off)[0], TOL[torch.float16])


def test_few_thousand_docs(rng, vectors, packed, ref_many, check):
    lengths = rng.integers(0, 40, size=2000)
    docs, d_off = packed(rng, lengths, 16)
    q, p = _t(vectors(rng, 8, 16), torch.float16), _t(docs, torch.float16)
    out = maxsim(q, p, d_off, backend="triton")
    check(_np(out), ref_many(_np(q), [0, 8], _np(p), d_off)[0], TOL[torch.float16])


def test_matches_cpu_path(rng, vectors, packed):
    docs, d_off = packed(rng, [5, 77, 0, 300], 128)
    q, p = _t(vectors(rng, 20, 128), torch.float32), _t(docs, torch.float32)
    gpu = maxsim(q, p, d_off, backend="triton")
    cpu = maxsim(q.cpu(), p.cpu(), d_off, backend="cpu")
    np.testing.assert_allclose(_np(gpu), _np(cpu), rtol=1e-5, atol=1e-5)


def test_rerank(rng, vectors, packed, ref_many):
    docs, d_off = packed(rng, rng.integers(0, 40, size=50), 64)
    q, p = _t(vectors(rng, 8, 64), torch.float32), _t(docs, torch.float32)
    idx, scores = rerank(q, p, d_off, 10, backend="triton")
    assert idx.dtype == torch.int64 and idx.device == p.device and scores.shape == (10,)
    ref = ref_many(_np(q), [0, 8], _np(p), d_off)[0]
    np.testing.assert_array_equal(idx.cpu().numpy(), np.argsort(-ref, kind="stable")[:10])
    np.testing.assert_allclose(_np(scores), ref[idx.cpu().numpy()], rtol=1e-5, atol=1e-5)


def test_numpy_input_with_triton_backend(rng, vectors, packed, ref_many, check):
    if CUDA:
        pytest.skip("numpy input stays on the CPU; the GPU run needs CUDA tensors")
    docs, d_off = packed(rng, [3, 20], 32)
    query = vectors(rng, 4, 32)
    out = maxsim(query, docs, d_off, backend="triton")
    assert isinstance(out, np.ndarray)
    check(out, ref_many(query, [0, 4], docs, d_off)[0], 1e-5)


def test_errors_before_launch(rng, vectors):
    q, p = _t(vectors(rng, 4, 16), torch.float16), _t(vectors(rng, 10, 16), torch.float16)
    with pytest.raises(ValueError, match="dimension mismatch"):
        maxsim(q[:, :8], p, [0, 10], backend="triton")
    with pytest.raises(ValueError, match="doc_offsets: offsets must be non-decreasing"):
        maxsim(q, p, torch.tensor([0, 6, 4, 10]), backend="triton")
    with pytest.raises(ValueError, match="doc_offsets: offsets must be integers"):
        maxsim(q, p, torch.tensor([0.0, 10.0]), backend="triton")
    with pytest.raises(ValueError, match="empty query"):
        maxsim_many(q, [0, 0, 4], p, [0, 10], backend="triton")
    with pytest.raises(ValueError, match="unsupported dtype torch.int32"):
        maxsim(q.to(torch.int32), p, [0, 10], backend="triton")


# --- compiled for an H100 (sm_90) without a GPU: catches what the interpreter lets through ----


def test_compiles_for_sm90():
    """Real Triton compiles (ptx + ptxas) of the default and candidate configs, in a fresh process:
    in this one the interpreter has replaced tl's own jit functions."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(root / "bench/device/compile_sm90.py"), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0 and not proc.stdout.strip():
        if "ImportError" in proc.stderr or "AttributeError" in proc.stderr:
            pytest.skip(f"Triton ahead-of-time compile API unavailable: {proc.stderr.strip()[-300:]}")
        pytest.fail(proc.stderr[-2000:])
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = [r for r in results if not r["ok"]]
    assert not bad, bad
    for r in results:
        if r["kernel"] == "rows":
            assert r.get("spill_bytes", 0) == 0, r  # tiling over d keeps d=1024 in registers
            assert r["mma"] != "fma" or r["dtype"] == "fp32", r
