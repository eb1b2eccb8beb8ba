"""MaxSim CPU path (numpy) against a float64 reference, plus packing and input validation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from m3rt.kernels import maxsim, maxsim_many, maxsim_pairs, pack, rerank
from m3rt.kernels import maxsim_cpu

TOL = {np.float32: 1e-5, np.float16: 1e-5}  # fp16: reference sees the same rounded inputs
# Block edges of the CPU path: with block_bytes=1 every block holds MIN_BLOCK_TOKENS tokens.
B = maxsim_cpu.MIN_BLOCK_TOKENS
EDGE_LENGTHS = [B - 1, B, B + 1, 1, 0, 3, 2 * B + 5, 0, B, 17]


def test_import_loads_numpy_only():
    code = "import sys, m3rt.kernels; print('torch' in sys.modules, 'triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- pack ---------------------------------------------------------------------------------


def test_pack_roundtrip_with_empty_items(rng, vectors):
    arrays = [vectors(rng, n, 8) for n in (3, 0, 5, 0)]
    packed, offsets = pack(arrays)
    assert packed.shape == (8, 8) and offsets.dtype == np.int64
    assert offsets.tolist() == [0, 3, 3, 8, 8]
    for a, lo, hi in zip(arrays, offsets[:-1], offsets[1:]):
        np.testing.assert_array_equal(packed[lo:hi], a)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ([np.zeros((2, 4)), np.zeros((2, 5))], "array 1 has d=5"),
        ([np.zeros(4)], r"shape \(4,\)"),
        ([], "at least one"),
    ],
)
def test_pack_errors(arrays, match):
    with pytest.raises(ValueError, match=match):
        pack(arrays)


# --- scores vs reference ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("d", [64, 128, 1024])
@pytest.mark.parametrize("threads", [1, 2])
def test_block_edges(rng, vectors, packed, ref_many, check, dtype, d, threads):
    docs, d_off = packed(rng, EDGE_LENGTHS, d)
    query = vectors(rng, 32, d)
    docs, query = docs.astype(dtype), query.astype(dtype)
    q_off = np.array([0, 32])
    out = maxsim_cpu.maxsim_many_cpu(query, q_off, docs, d_off, threads=threads, block_bytes=1)
    check(out, ref_many(query, q_off, docs, d_off), TOL[dtype])
    # Same through the public call with default blocking.
    check(maxsim(query, docs, d_off), ref_many(query, q_off, docs, d_off)[0], TOL[dtype])


def test_threads_restore_blas_and_fallback(rng, vectors, packed, ref_many, check, monkeypatch):
    docs, d_off = packed(rng, [300, 5, 0, 600, 40], 64)
    query = vectors(rng, 8, 64)
    ref = ref_many(query, [0, 8], docs, d_off)
    ctl = maxsim_cpu._blas_controller()
    before = [i["num_threads"] for i in ctl.info()] if ctl else None
    check(maxsim_cpu.maxsim_many_cpu(query, np.array([0, 8]), docs, d_off, threads=2, block_bytes=1), ref, 1e-5)
    if ctl:  # the per-call BLAS limit of 1 thread is undone
        assert [i["num_threads"] for i in ctl.info()] == before
    monkeypatch.setattr(maxsim_cpu, "_blas", False)  # no threadpoolctl: serial, same result
    assert maxsim_cpu.default_threads() == 1
    check(maxsim_cpu.maxsim_many_cpu(query, np.array([0, 8]), docs, d_off, threads=2, block_bytes=1), ref, 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_one_token_query_and_docs(rng, vectors, packed, ref_many, check, dtype):
    docs, d_off = packed(rng, [1, 1, 0, 1], 128)
    query = vectors(rng, 1, 128)
    docs, query = docs.astype(dtype), query.astype(dtype)
    out = maxsim(query, docs, d_off)
    assert out.dtype == np.float32 and out.shape == (4,)
    check(out, ref_many(query, [0, 1], docs, d_off)[0], TOL[dtype])
    # One token each: the score is the dot product itself.
    np.testing.assert_allclose(out[[0, 1, 3]], (docs[[0, 1, 2]].astype(np.float64) @ query[0].astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_empty_docs_score_zero(rng, vectors):
    query = vectors(rng, 8, 64)
    docs = np.zeros((0, 64), np.float32)
    np.testing.assert_array_equal(maxsim(query, docs, [0, 0, 0]), np.zeros(2, np.float32))
    assert maxsim(query, docs, [0]).shape == (0,)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_fp16_inf_nan_keep_ieee_semantics(rng, vectors):
    query = np.abs(vectors(rng, 4, 16)).astype(np.float16)
    docs = np.abs(vectors(rng, 6, 16)).astype(np.float16)
    docs[1, 3] = np.inf
    docs[4, 0] = np.nan
    out = maxsim(query, docs, [0, 3, 4, 6])
    assert np.isinf(out[0]) and out[0] > 0 and np.isfinite(out[1]) and np.isnan(out[2])


def test_fp16_subnormals(rng, check, ref_many):
    docs = (rng.standard_normal((300, 64)) * 1e-5).astype(np.float16)  # mostly fp16 subnormals
    query = rng.standard_normal((7, 64)).astype(np.float16)
    check(maxsim(query, docs, [0, 100, 300]), ref_many(query, [0, 7], docs, [0, 100, 300])[0], 1e-5)


@pytest.mark.parametrize("layout", ["strided_rows", "strided_cols", "fortran"])
def test_non_contiguous(rng, vectors, ref_many, check, layout):
    d = 64
    lengths = [300, 0, 5, 260]
    off = np.concatenate([[0], np.cumsum(lengths)])
    big = vectors(rng, 2 * int(off[-1]), 2 * d)
    docs = {
        "strided_rows": big[::2, :d],
        "strided_cols": big[: off[-1], ::2],
        "fortran": np.asfortranarray(big[: off[-1], :d]),
    }[layout]
    query = np.asfortranarray(vectors(rng, 9, d))
    assert not docs.flags.c_contiguous and not query.flags.c_contiguous
    check(maxsim(query, docs, off), ref_many(query, [0, 9], docs, off)[0], 1e-5)
    check(maxsim(query, docs.astype(np.float16), off), ref_many(query, [0, 9], docs.astype(np.float16), off)[0], 1e-5)


def test_few_thousand_docs(rng, vectors, packed, ref_many, check):
    lengths = rng.integers(0, 120, size=3000)
    docs, d_off = packed(rng, lengths, 128)
    query = vectors(rng, 32, 128)
    check(maxsim(query, docs, d_off), ref_many(query, [0, 32], docs, d_off)[0], 1e-5)


def test_mixed_dtypes(rng, vectors, packed, ref_many, check):
    docs, d_off = packed(rng, [5, 40, 0], 64)
    docs = docs.astype(np.float16)
    query = vectors(rng, 6, 64).astype(np.float64)
    check(maxsim(query, docs, d_off), ref_many(query.astype(np.float32), [0, 6], docs, d_off)[0], 1e-5)


# --- many / pairs / rerank ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_maxsim_many(rng, vectors, packed, ref_many, check, dtype):
    # 40 queries (> QUERY_GROUP_ROWS rows in total: several query groups), one very long query.
    q_lengths = list(rng.integers(1, 33, size=40)) + [maxsim_cpu.QUERY_GROUP_ROWS + 3, 1]
    queries, q_off = packed(rng, q_lengths, 64)
    docs, d_off = packed(rng, list(rng.integers(0, 300, size=50)) + [0, 1, 700], 64)
    queries, docs = queries.astype(dtype), docs.astype(dtype)
    out = maxsim_many(queries, q_off, docs, d_off)
    assert out.shape == (42, 53) and out.dtype == np.float32
    check(out, ref_many(queries, q_off, docs, d_off), 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_maxsim_pairs(rng, vectors, packed, ref_pairs, check, dtype):
    n = 30
    queries, q_off = packed(rng, rng.integers(1, 40, size=n), 128)
    lengths = rng.integers(0, 200, size=n)
    lengths[[3, 7]] = 0
    lengths[5] = 5000  # longer than a block: chunked running max
    docs, d_off = packed(rng, lengths, 128)
    queries, docs = queries.astype(dtype), docs.astype(dtype)
    for threads in (1, 2):
        out = maxsim_cpu.maxsim_pairs_cpu(queries, q_off, docs, d_off, threads=threads, block_bytes=1)
        check(out, ref_pairs(queries, q_off, docs, d_off), 1e-5)
    out = maxsim_pairs(queries, q_off, docs, d_off)
    assert out.shape == (n,) and out.dtype == np.float32
    check(out, ref_pairs(queries, q_off, docs, d_off), 1e-5)


@pytest.mark.parametrize("top_k", [0, 1, 7, 60, 1000])
def test_rerank(rng, vectors, packed, ref_many, top_k):
    docs, d_off = packed(rng, rng.integers(0, 50, size=60), 64)
    # Ties: doc 10 is a copy of doc 2, plus empty docs (score 0, exactly). Copies score the same up to
    # float32 rounding, not always bit for bit: BLAS builds round a GEMM's tail columns differently (an AMD
    # EPYC's OpenBLAS gave -0.0024117492 and -0.0024117343). The contract: the order follows the returned
    # scores, lower index first among exactly equal ones.
    docs_list = [docs[d_off[i] : d_off[i + 1]] for i in range(60)]
    docs_list[10] = docs_list[2]
    docs, d_off = pack(docs_list)
    query = vectors(rng, 16, 64)
    idx, scores = rerank(query, docs, d_off, top_k)
    ref = ref_many(query, [0, 16], docs, d_off)[0]
    k = min(top_k, 60)
    assert idx.dtype == np.int64 and scores.dtype == np.float32 and idx.shape == scores.shape == (k,)
    full = maxsim(query, docs, d_off)
    expected = np.lexsort((np.arange(60), -full))[:k]  # score desc, index asc
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(scores, ref[idx], rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores) <= 0)
    # Up to float rounding the order is the reference's.
    np.testing.assert_allclose(np.sort(ref)[::-1][:k], ref[idx], atol=1e-5)
    assert abs(full[2] - full[10]) <= 1e-6 * max(1.0, abs(float(full[2])))
    if 2 in idx and 10 in idx and full[2] == full[10]:
        assert list(idx).index(2) < list(idx).index(10)
    empty = [i for i in idx if d_off[i + 1] == d_off[i]]
    assert empty == sorted(empty), "exactly tied (empty) documents keep index order"


# --- torch CPU tensors take the numpy path ------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_cpu_tensors(rng, vectors, packed, ref_many, ref_pairs, check, dtype):
    torch = pytest.importorskip("torch")
    dt = getattr(torch, dtype)
    docs, d_off = packed(rng, [0, 3, 130, 1, 0], 64)
    query = vectors(rng, 5, 64)
    docs_t, query_t = torch.from_numpy(docs).to(dt), torch.from_numpy(query).to(dt)
    out = maxsim(query_t, docs_t, torch.from_numpy(d_off))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == "cpu"
    ref = ref_many(query_t.double().numpy(), [0, 5], docs_t.double().numpy(), d_off)[0]
    check(out.numpy(), ref, 1e-5)
    idx, sc = rerank(query_t, docs_t, d_off, 2)
    assert isinstance(idx, torch.Tensor) and idx.dtype == torch.int64
    np.testing.assert_array_equal(idx.numpy(), np.argsort(-ref, kind="stable")[:2])
    q2 = torch.cat([query_t, query_t[:2]])
    pairs = maxsim_pairs(q2, [0, 5, 7], docs_t[:3], [0, 0, 3])
    check(pairs.numpy(), ref_pairs(q2.double().numpy(), [0, 5, 7], docs_t[:3].double().numpy(), [0, 0, 3]), 1e-5)


# --- validation ---------------------------------------------------------------------------


def _inputs(rng, vectors):
    return vectors(rng, 4, 16), vectors(rng, 10, 16)


@pytest.mark.parametrize(
    "offsets, match",
    [
        (np.array([0.0, 4.0, 10.0]), "offsets must be integers"),
        (np.array([[0, 4, 10]]), "offsets must be 1-D"),
        (np.array([], dtype=np.int64), "at least one entry"),
        (np.array([1, 4, 10]), "must start at 0"),
        (np.array([0, 6, 4, 10]), r"non-decreasing \(offsets\[2\] < offsets\[1\]\)"),
        (np.array([0, 4, 9]), "last offset 9 != number of rows 10"),
        (np.array([0, 4, 11]), "last offset 11 != number of rows 10"),
    ],
)
def test_bad_doc_offsets(rng, vectors, offsets, match):
    query, docs = _inputs(rng, vectors)
    with pytest.raises(ValueError, match="doc_offsets: .*" + match):
        maxsim(query, docs, offsets)
    with pytest.raises(ValueError, match="doc_offsets: .*" + match):
        maxsim_many(query, [0, 4], docs, offsets)


def test_bad_query_offsets(rng, vectors):
    query, docs = _inputs(rng, vectors)
    with pytest.raises(ValueError, match="query_offsets: offsets must start at 0, got 1"):
        maxsim_many(query, [1, 4], docs, [0, 10])
    with pytest.raises(ValueError, match="query_offsets: last offset 3 != number of rows 4"):
        maxsim_pairs(query, [0, 3], docs, [0, 10])


def test_empty_query(rng, vectors):
    query, docs = _inputs(rng, vectors)
    with pytest.raises(ValueError, match="empty query"):
        maxsim(query[:0], docs, [0, 10])
    with pytest.raises(ValueError, match=r"empty query \(query 1 has no tokens\)"):
        maxsim_many(query, [0, 4, 4], docs, [0, 10])
    with pytest.raises(ValueError, match="empty query"):
        rerank(query[:0], docs, [0, 10], 1)


def test_dimension_mismatch(rng, vectors):
    query, docs = _inputs(rng, vectors)
    with pytest.raises(ValueError, match="dimension mismatch: queries have d=8, docs have d=16"):
        maxsim(query[:, :8], docs, [0, 10])
    with pytest.raises(ValueError, match="dimension mismatch"):
        maxsim_pairs(query[:, :8], [0, 4], docs, [0, 10])


def test_other_errors(rng, vectors):
    query, docs = _inputs(rng, vectors)
    with pytest.raises(ValueError, match="2 queries but 1 docs"):
        maxsim_pairs(query, [0, 2, 4], docs, [0, 10])
    with pytest.raises(ValueError, match="backend must be one of"):
        maxsim(query, docs, [0, 10], backend="gpu")
    with pytest.raises(ValueError, match="unsupported dtype int64"):
        maxsim(query.astype(np.int64), docs, [0, 10])
    with pytest.raises(ValueError, match=r"expected a 2-D \[tokens, d\] array, got shape \(160,\)"):
        maxsim(query, docs.ravel(), [0, 160])
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        rerank(query, docs, [0, 10], -1)
    with pytest.raises(ValueError, match="top_k must be an int"):
        rerank(query, docs, [0, 10], 2.0)


def test_fork_after_threaded_use(rng, vectors, packed, ref_many, check):
    """A forked child (multiprocessing with fork, gunicorn --preload, Ray) has none of the parent's threads:
    the thread pool is rebuilt there instead of waiting forever on workers that do not exist."""
    from forking import in_forked_child

    docs, d_off = packed(rng, [300, 5, 0, 600, 40], 64)
    query = vectors(rng, 8, 64)
    q_off = np.array([0, 8])
    ref = ref_many(query, q_off, docs, d_off)
    check(maxsim_cpu.maxsim_many_cpu(query, q_off, docs, d_off, threads=2, block_bytes=1), ref, 1e-5)
    if not maxsim_cpu._blas_controller():
        pytest.skip("threadpoolctl missing: MaxSim runs serial, there is no pool to fork")
    assert maxsim_cpu._pool is not None  # the parent's pool exists, its threads will not in the child
    out = in_forked_child(lambda: maxsim_cpu.maxsim_many_cpu(query, q_off, docs, d_off, threads=2, block_bytes=1))
    check(out, ref, 1e-5)
