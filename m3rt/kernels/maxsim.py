"""Public MaxSim calls: validation, then dispatch to the numpy CPU path or the Triton kernels.

score(q, p) = (1 / len(q)) * sum_i max_j q_i . p_j   (BGE-M3 / FlagEmbedding ColBERT score)

numpy in -> numpy out (CPU path). torch in -> torch out on the input's device: CUDA tensors run
the Triton kernels, CPU tensors the numpy path unless backend="triton" (Triton's interpreter).
torch and triton are imported only when a torch tensor or backend="triton" asks for them.
"""

from __future__ import annotations

import sys

import numpy as np

from .packing import check_offsets

BACKENDS = ("auto", "cpu", "triton")
_NP_FLOATS = (np.float16, np.float32, np.float64)


def _torch():
    return sys.modules.get("torch")


def _is_tensor(x) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _check_matrix(x, name: str):
    if not _is_tensor(x):
        x = np.asarray(x)
        if x.dtype.type not in _NP_FLOATS:
            raise ValueError(f"{name}: unsupported dtype {x.dtype} (float16, float32 or float64)")
    else:
        torch = _torch()
        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise ValueError(f"{name}: unsupported dtype {x.dtype} (float16, bfloat16, float32 or float64)")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [tokens, d] array, got shape {tuple(x.shape)}")
    return x


def _validate(queries, query_offsets, docs, doc_offsets, backend):
    """Check everything before any launch; returns arrays plus int64 numpy offsets."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    queries = _check_matrix(queries, "queries")
    docs = _check_matrix(docs, "docs")
    if queries.shape[1] != docs.shape[1]:
        raise ValueError(f"dimension mismatch: queries have d={queries.shape[1]}, docs have d={docs.shape[1]}")
    q_off = check_offsets(query_offsets, queries.shape[0], "query_offsets")
    d_off = check_offsets(doc_offsets, docs.shape[0], "doc_offsets")
    empty = np.flatnonzero(np.diff(q_off) == 0)
    if empty.size:
        raise ValueError(f"empty query (query {int(empty[0])} has no tokens): MaxSim divides by query length")
    return queries, q_off, docs, d_off


def _resolve_backend(backend: str, queries, docs) -> str:
    if backend == "auto":
        return "triton" if _is_tensor(docs) and docs.is_cuda else "cpu"
    return backend


def _run(kind: str, queries, q_off, docs, d_off, backend: str):
    """kind: 'many' -> [n_q, n_docs], 'pairs' -> [n]. Returns the input's array type."""
    backend = _resolve_backend(backend, queries, docs)
    as_torch = _is_tensor(queries) or _is_tensor(docs)
    if backend == "triton":
        import torch

        from . import maxsim_triton

        out_np = not as_torch
        q = queries if _is_tensor(queries) else torch.from_numpy(np.ascontiguousarray(queries))
        d = docs if _is_tensor(docs) else torch.from_numpy(np.ascontiguousarray(docs))
        fn = maxsim_triton.maxsim_many_triton if kind == "many" else maxsim_triton.maxsim_pairs_triton
        out = fn(q, q_off, d, d_off)
        return out.cpu().numpy() if out_np else out

    from . import maxsim_cpu

    device = docs.device if _is_tensor(docs) else (queries.device if _is_tensor(queries) else None)
    q = _query_to_numpy(queries)
    d, bf16 = _docs_to_numpy(docs)
    fn = maxsim_cpu.maxsim_many_cpu if kind == "many" else maxsim_cpu.maxsim_pairs_cpu
    out = fn(q, q_off, d, d_off, docs_bf16=bf16)
    if as_torch:
        import torch

        return torch.from_numpy(out).to(device)
    return out


def _query_to_numpy(x) -> np.ndarray:
    if not _is_tensor(x):
        return x
    torch = _torch()
    x = x.detach()
    if x.dtype == torch.bfloat16:  # numpy has no bf16; queries are small, upcast them here
        x = x.float()
    return x.cpu().numpy()


def _docs_to_numpy(x) -> tuple[np.ndarray, bool]:
    """Docs as numpy without a full-size copy; bf16 travels as its uint16 bit pattern."""
    if not _is_tensor(x):
        return x, False
    torch = _torch()
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(np.uint16), True
    return x.numpy(), False


# ---------------------------------------------------------------------------------------------
# Public calls


def maxsim(query, docs, doc_offsets, *, backend: str = "auto"):
    """Scores [n_docs] float32 of one query [nq, d] against packed docs [sum n_i, d]."""
    query = _check_matrix(query, "query")
    if query.shape[0] == 0:
        raise ValueError("empty query: MaxSim divides by query length")
    q_off = np.array([0, query.shape[0]], dtype=np.int64)
    query, q_off, docs, d_off = _validate(query, q_off, docs, doc_offsets, backend)
    return _run("many", query, q_off, docs, d_off, backend)[0]


def maxsim_many(queries, query_offsets, docs, doc_offsets, *, backend: str = "auto"):
    """Scores [n_queries, n_docs] float32 of packed queries against packed docs."""
    queries, q_off, docs, d_off = _validate(queries, query_offsets, docs, doc_offsets, backend)
    return _run("many", queries, q_off, docs, d_off, backend)


def maxsim_pairs(queries, query_offsets, docs, doc_offsets, *, backend: str = "auto"):
    """Scores [n] float32 where pair i is query i against doc i."""
    queries, q_off, docs, d_off = _validate(queries, query_offsets, docs, doc_offsets, backend)
    if len(q_off) != len(d_off):
        raise ValueError(f"maxsim_pairs: {len(q_off) - 1} queries but {len(d_off) - 1} docs (need one doc per query)")
    return _run("pairs", queries, q_off, docs, d_off, backend)


def rerank(query, docs, doc_offsets, top_k: int, *, backend: str = "auto"):
    """(indices int64 [k], scores float32 [k]) of the top k docs, best first, ties -> lower index.

    k = min(top_k, n_docs).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise ValueError(f"top_k must be an int, got {type(top_k).__name__}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    scores = maxsim(query, docs, doc_offsets, backend=backend)
    k = min(int(top_k), scores.shape[0])
    if _is_tensor(scores):
        import torch

        # A stable descending sort keeps the lower index first among equal scores.
        vals, idx = torch.sort(scores, descending=True, stable=True)
        return idx[:k], vals[:k]
    idx = _top_k_indices(scores, k)
    return idx, scores[idx]


def _top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    n = scores.shape[0]
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k < n // 8:  # partition first; keep every candidate tied with the k-th score
        kth = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= kth)
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))  # primary: score desc; secondary: index asc
    return cand[order[:k]].astype(np.int64)
