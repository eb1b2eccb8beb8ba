"""MaxSim Triton kernels over packed (ragged) queries and documents.

Kernel 1 (_maxsim_rows_kernel): one program per (document, tile of BLOCK_M query rows). It walks
the document in BLOCK_N-token tiles; per tile it accumulates q . p over d in BLOCK_D slices with
tl.dot (fp32 accumulator, so d up to 1024 never needs a [BLOCK_M, d] register tile), masks tokens
past the document end to -inf and keeps a running max per query row. Tiles of BLOCK_M >= 16 rows
are what tl.dot needs; up to 128 rows (4 queries of 32 tokens) per program make the document tile
serve several queries, which is what lifts the many-queries case towards matmul rate. Programs
of one document are adjacent in the launch order so its tokens are read from HBM once and reused
through L2 by the other row tiles.

If every query fits in one row tile of its program (single query, or pairs with short queries)
the kernel writes the mean directly. Otherwise it writes per-row maxima [n_docs, query rows] and
kernel 2 (_segment_mean_kernel) sums them per query in a fixed order (deterministic, no atomics).

Imports torch and triton: load this module only through m3rt.kernels.maxsim (lazily).
Set TRITON_INTERPRET=1 before the first import to run the kernels on CPU tensors.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl


@triton.jit
def _tile_rowmax(q_ptrs, q_once, row_mask, d_ptr, n0, doc_hi, stride_dr, stride_dd, stride_qd,
                 D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                 PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """Max over the document tokens n0 .. n0+BLOCK_N of q . p, per query row: [BLOCK_M] fp32."""
    EVEN_D: tl.constexpr = D % BLOCK_D == 0
    offs_d = tl.arange(0, BLOCK_D)
    cols = n0 + tl.arange(0, BLOCK_N)
    col_mask = cols < doc_hi
    p_ptrs = d_ptr + cols[:, None].to(tl.int64) * stride_dr + offs_d[None, :] * stride_dd
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, D, BLOCK_D):  # tile over d: a [BLOCK_M, d] tile would spill at d=1024
        if EVEN_D:
            p = tl.load(p_ptrs + k0 * stride_dd, mask=col_mask[:, None], other=0.0)
        else:
            k_ok = (k0 + offs_d) < D
            p = tl.load(p_ptrs + k0 * stride_dd, mask=col_mask[:, None] & k_ok[None, :], other=0.0)
        if D <= BLOCK_D:
            q = q_once
        elif EVEN_D:
            q = tl.load(q_ptrs + k0 * stride_qd, mask=row_mask[:, None], other=0.0)
        else:
            q = tl.load(q_ptrs + k0 * stride_qd, mask=row_mask[:, None] & k_ok[None, :], other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
            p = p.to(tl.float32)
        acc = tl.dot(q, tl.trans(p), acc, input_precision=PRECISION)
    acc = tl.where(col_mask[None, :], acc, float("-inf"))  # padding tokens must not win the max
    return tl.max(acc, axis=1)


@triton.jit
def _maxsim_rows_kernel(
    q_ptr, q_off_ptr, d_ptr, d_off_ptr, out_ptr,
    n_row_tiles, q_rows_total,
    stride_qr, stride_qd, stride_dr, stride_dd,
    D: tl.constexpr,
    PAIRS: tl.constexpr,  # program item i pairs query i with doc i; else all query rows vs doc i
    FUSED: tl.constexpr,  # the program's rows are one whole query: store its mean
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,  # the interpreter's tl.dot reads bf16 as raw uint16: compute in fp32
    FLATTEN: tl.constexpr = False,  # one software pipeline over (token tile, d tile) pairs
):
    pid = tl.program_id(0)
    item = pid // n_row_tiles  # row tiles of one document are adjacent: L2 reuse of its tokens
    tile = pid % n_row_tiles

    doc_lo = tl.load(d_off_ptr + item)
    doc_hi = tl.load(d_off_ptr + item + 1)
    if PAIRS:
        r_lo = tl.load(q_off_ptr + item) + tile * BLOCK_M
        r_hi = tl.load(q_off_ptr + item + 1)
        doc_hi = tl.where(r_lo < r_hi, doc_hi, doc_lo)  # tile past a short query: skip the doc
    else:
        r_lo = tile * BLOCK_M
        r_hi = q_rows_total

    rows = r_lo + tl.arange(0, BLOCK_M)
    row_mask = rows < r_hi
    offs_d = tl.arange(0, BLOCK_D)
    q_ptrs = q_ptr + rows[:, None].to(tl.int64) * stride_qr + offs_d[None, :] * stride_qd
    if D <= BLOCK_D:  # the whole query tile fits: load it once, not per document tile
        q_once = tl.load(q_ptrs, mask=row_mask[:, None] & (offs_d[None, :] < D), other=0.0)
    else:
        q_once = q_ptrs  # unused

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    if FLATTEN:  # tl.range(flatten=) only when asked: older Triton releases lack the keyword
        for n0 in tl.range(doc_lo, doc_hi, BLOCK_N, flatten=True):
            m = tl.maximum(m, _tile_rowmax(q_ptrs, q_once, row_mask, d_ptr, n0, doc_hi, stride_dr, stride_dd,
                                           stride_qd, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION, UPCAST))
    else:
        for n0 in range(doc_lo, doc_hi, BLOCK_N):
            m = tl.maximum(m, _tile_rowmax(q_ptrs, q_once, row_mask, d_ptr, n0, doc_hi, stride_dr, stride_dd,
                                           stride_qd, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION, UPCAST))
    m = tl.where(doc_hi > doc_lo, m, 0.0)  # empty document scores 0

    if FUSED:
        total = tl.sum(tl.where(row_mask, m, 0.0), axis=0)
        n_rows = tl.sum(tl.where(row_mask, 1.0, 0.0), axis=0)  # the query length
        tl.store(out_ptr + item, total / n_rows)
    else:
        if PAIRS:
            tl.store(out_ptr + rows, m, mask=row_mask)
        else:
            tl.store(out_ptr + item.to(tl.int64) * q_rows_total + rows, m, mask=row_mask)


@triton.jit
def _segment_mean_kernel(
    rowmax_ptr, q_off_ptr, out_ptr,
    n_cols, row_stride, n_col_blocks,
    BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """out[q, c] = mean over rows r of query q of rowmax[c, r]."""
    pid = tl.program_id(0)
    q = pid // n_col_blocks
    cb = pid % n_col_blocks
    r_lo = tl.load(q_off_ptr + q)
    r_hi = tl.load(q_off_ptr + q + 1)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < n_cols
    base = rowmax_ptr + cols[:, None].to(tl.int64) * row_stride
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for r0 in range(r_lo, r_hi, BLOCK_R):
        rs = r0 + tl.arange(0, BLOCK_R)
        tile = tl.load(base + rs[None, :], mask=col_mask[:, None] & (rs[None, :] < r_hi), other=0.0)
        acc += tl.sum(tile, axis=1)
    tl.store(out_ptr + q.to(tl.int64) * n_cols + cols, acc / (r_hi - r_lo).to(tl.float32), mask=col_mask)


# ---------------------------------------------------------------------------------------------
# Launchers

INTERPRETED = type(_maxsim_rows_kernel).__name__ == "InterpretedFunction"


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def default_config(rows: int, d: int, dtype: torch.dtype) -> dict:
    """Tiles by query rows per document. Few rows (one query): memory-bound, so small tiles and
    many resident programs per SM hide HBM latency (sm_90: 108 regs, 48 KiB smem, 0 spills at
    d=1024). Many rows: 128-row tiles (4 queries of 32 tokens share each document tile) on wgmma.
    Chosen from bench/device/maxsim.sh's sweeps on an H100 (bench/results/gpu-h100.md): one query at
    d=1024 reads at the copy rate with every tile tried; 128-wide document tiles with 4 warps were the fastest
    at d=1024 and d=128 (bench/results/design-notes.md)."""
    block_m = min(128, max(16, _pow2(rows)))
    if dtype == torch.float32:  # fp32 runs on FMA units ("ieee"): keep tiles small
        return dict(BLOCK_M=min(block_m, 64), BLOCK_N=32, BLOCK_D=min(64, max(16, _pow2(d))),
                    num_warps=4, num_stages=2)
    if block_m <= 32:
        return dict(BLOCK_M=block_m, BLOCK_N=64, BLOCK_D=min(128, max(16, _pow2(d))),
                    num_warps=4, num_stages=3)
    return dict(BLOCK_M=block_m, BLOCK_N=128, BLOCK_D=min(64, max(16, _pow2(d))), num_warps=4, num_stages=3)


def _prepare(queries: torch.Tensor, docs: torch.Tensor):
    if not INTERPRETED and not docs.is_cuda:
        raise ValueError(
            "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before "
            "m3rt.kernels.maxsim_triton is first imported)"
        )
    if docs.dtype == torch.float64:  # no fp64 tl.dot path here: score in fp32
        docs = docs.float()
    if queries.device != docs.device:
        queries = queries.to(docs.device)
    if queries.dtype != docs.dtype:  # tl.dot needs one dtype: the (small) queries follow the docs
        queries = queries.to(docs.dtype)
    return queries, docs


def _launch_rows(queries, q_off, docs, d_off, out, n_items, rows_per_item, pairs, fused, config):
    cfg = dict(default_config(rows_per_item, docs.shape[1], docs.dtype), **(config or {}))
    block_m = cfg.pop("BLOCK_M")
    n_row_tiles = triton.cdiv(rows_per_item, block_m)
    if fused and n_row_tiles != 1:
        raise AssertionError("fused mean needs one row tile per program")
    grid = (n_items * n_row_tiles,)
    return _maxsim_rows_kernel[grid](
        queries, q_off, docs, d_off, out,
        n_row_tiles, queries.shape[0],
        queries.stride(0), queries.stride(1), docs.stride(0), docs.stride(1),
        D=docs.shape[1], PAIRS=pairs, FUSED=fused, BLOCK_M=block_m,
        PRECISION="ieee" if docs.dtype == torch.float32 else "tf32",
        UPCAST=INTERPRETED and docs.dtype == torch.bfloat16,
        **cfg,
    )  # the compiled kernel (n_regs, n_spills) on a GPU


def _segment_mean(rowmax: torch.Tensor, q_off: torch.Tensor, n_q: int, n_cols: int) -> torch.Tensor:
    out = torch.empty((n_q, n_cols), dtype=torch.float32, device=rowmax.device)
    block_c = 64
    n_col_blocks = triton.cdiv(n_cols, block_c)
    _segment_mean_kernel[(n_q * n_col_blocks,)](
        rowmax, q_off, out, n_cols, rowmax.shape[-1], n_col_blocks, BLOCK_C=block_c, BLOCK_R=32,
    )
    return out


def maxsim_many_triton(queries, query_offsets, docs, doc_offsets, config: dict | None = None) -> torch.Tensor:
    """[n_queries, n_docs] float32 scores on the docs' device.

    Offsets: validated int64 numpy arrays, or int64 tensors already on the device (no upload).
    config overrides default_config keys (BLOCK_M/N/D, num_warps, num_stages, FLATTEN).
    """
    queries, docs = _prepare(queries, docs)
    n_q, n_docs = len(query_offsets) - 1, len(doc_offsets) - 1
    dev = docs.device
    if n_docs == 0 or docs.shape[0] == 0:
        return torch.zeros((n_q, n_docs), dtype=torch.float32, device=dev)
    q_off = torch.as_tensor(query_offsets, dtype=torch.int64, device=dev)  # no copy if already there
    d_off = torch.as_tensor(doc_offsets, dtype=torch.int64, device=dev)
    rows = queries.shape[0]
    block_m = dict(default_config(rows, docs.shape[1], docs.dtype), **(config or {}))["BLOCK_M"]
    if n_q == 1 and rows <= block_m:
        out = torch.empty(n_docs, dtype=torch.float32, device=dev)
        _launch_rows(queries, q_off, docs, d_off, out, n_docs, rows, False, True, config)
        return out[None, :]
    rowmax = torch.empty((n_docs, rows), dtype=torch.float32, device=dev)
    _launch_rows(queries, q_off, docs, d_off, rowmax, n_docs, rows, False, False, config)
    return _segment_mean(rowmax, q_off, n_q, n_docs)


def maxsim_pairs_triton(queries, query_offsets: np.ndarray, docs, doc_offsets: np.ndarray,
                        config: dict | None = None) -> torch.Tensor:
    """[n] float32 scores, pair i = query i vs doc i, on the docs' device."""
    queries, docs = _prepare(queries, docs)
    n = len(query_offsets) - 1
    dev = docs.device
    if n == 0 or docs.shape[0] == 0:
        return torch.zeros(n, dtype=torch.float32, device=dev)
    q_off = torch.as_tensor(query_offsets, dtype=torch.int64).to(dev)
    d_off = torch.as_tensor(doc_offsets, dtype=torch.int64).to(dev)
    longest = int(np.diff(query_offsets).max())
    block_m = dict(default_config(longest, docs.shape[1], docs.dtype), **(config or {}))["BLOCK_M"]
    if longest <= block_m:
        out = torch.empty(n, dtype=torch.float32, device=dev)
        _launch_rows(queries, q_off, docs, d_off, out, n, longest, True, True, config)
        return out
    rowmax = torch.empty((1, queries.shape[0]), dtype=torch.float32, device=dev)
    _launch_rows(queries, q_off, docs, d_off, rowmax, n, longest, True, False, config)
    return _segment_mean(rowmax, q_off, n, 1)[:, 0]
