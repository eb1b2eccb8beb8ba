"""Scoring through the MaxSim kernels equals the plain formulas, and compute_score's ColBERT score
reproduces upstream's padded computation (FlagEmbedding's own compute_colbert_score) exactly."""

from __future__ import annotations

import numpy as np
import pytest

from m3rt.runtime.scoring import pair_scores


def plain_colbert(q: np.ndarray, p: np.ndarray) -> float:
    """The formula, in float64: mean over query vectors of the best dot product."""
    return float((q.astype(np.float64) @ p.astype(np.float64).T).max(axis=1).mean())


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def upstream_colbert(q_list, p_list, batch_size):
    """FlagEmbedding's compute_score path: chunks of batch_size pairs, each padded with zero vectors
    to its longest query / passage, scored by EncoderOnlyEmbedderM3Model.compute_colbert_score."""
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("FlagEmbedding.finetune.embedder.encoder_only.m3.modeling")

    class Temperature:
        temperature = 1.0

    def pad(vectors):
        width = max(len(v) for v in vectors)
        out = np.zeros((len(vectors), width, vectors[0].shape[1]), dtype=np.float32)
        for i, v in enumerate(vectors):
            out[i, : len(v)] = v
        return torch.from_numpy(out)

    scores = []
    for s in range(0, len(q_list), batch_size):
        qs, ps = q_list[s : s + batch_size], p_list[s : s + batch_size]
        q_mask = torch.zeros((len(qs), max(len(q) for q in qs) + 1), dtype=torch.long)  # +1: the CLS column
        for i, q in enumerate(qs):
            q_mask[i, : len(q) + 1] = 1
        full = modeling.EncoderOnlyEmbedderM3Model.compute_colbert_score(Temperature(), pad(qs), pad(ps), q_mask)
        scores.extend(full.diagonal().tolist())
    return scores


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_compute_score_colbert_matches_upstream_padding(seed, batch_size):
    rng = np.random.default_rng(seed)
    d, n = 16, 11  # small d: random unit vectors often have all-negative similarities to a short passage
    q_list = [unit_rows(rng, int(k), d) for k in rng.integers(1, 9, size=n)]
    p_list = [unit_rows(rng, int(k), d) for k in rng.integers(1, 12, size=n)]
    empty = [{}] * n
    dense = unit_rows(rng, n, d)
    ours = pair_scores(dense, dense, empty, empty, q_list, p_list, [1, 1, 1], upstream_batch_size=batch_size)
    ref = upstream_colbert(q_list, p_list, batch_size)
    np.testing.assert_allclose(ours["colbert"], ref, rtol=0, atol=1e-6)
    plain = [plain_colbert(q, p) for q, p in zip(q_list, p_list)]
    if batch_size == 1:  # no padding upstream: the plain formula
        np.testing.assert_allclose(ours["colbert"], plain, atol=1e-6)
    else:  # the floor at 0 does change some scores here, so this test can tell the two apart
        assert not np.allclose(ref, plain, atol=1e-4)
    no_floor = pair_scores(dense, dense, empty, empty, q_list, p_list, [1, 1, 1], upstream_batch_size=None)
    np.testing.assert_allclose(no_floor["colbert"], plain, atol=1e-6)


def test_weighted_combinations():
    rng = np.random.default_rng(0)
    q, p = unit_rows(rng, 3, 8), unit_rows(rng, 3, 8)
    lq = [{"5": np.float32(0.5), "7": np.float32(0.25)}, {}, {"9": np.float32(1.0)}]
    lp = [{"7": np.float32(0.5), "5": np.float32(0.1)}, {"5": np.float32(1.0)}, {"9": np.float32(0.3)}]
    cq = [unit_rows(rng, 2, 8) for _ in range(3)]
    cp = [unit_rows(rng, 4, 8) for _ in range(3)]
    w = [0.2, 0.3, 0.5]
    s = pair_scores(q, p, lq, lp, cq, cp, w, upstream_batch_size=None)
    dense = (q * p).sum(1)
    sparse = np.array([0.5 * 0.1 + 0.25 * 0.5, 0.0, 0.3])
    colbert = np.array([plain_colbert(a, b) for a, b in zip(cq, cp)])
    np.testing.assert_allclose(s["dense"], dense, atol=1e-6)
    np.testing.assert_allclose(s["sparse"], sparse, atol=1e-6)
    np.testing.assert_allclose(s["sparse+dense"], (0.3 * sparse + 0.2 * dense) / 0.5, atol=1e-6)
    np.testing.assert_allclose(s["colbert+sparse+dense"], 0.5 * colbert + 0.3 * sparse + 0.2 * dense, atol=1e-6)


def test_runtime_scores_equal_plain_formula(runtime):
    texts = ["What is BGE M3?", "北京是中国的首都。", "", "hello hello world", "x " * 200]
    vecs = runtime.encode(texts, return_colbert_vecs=True)["colbert_vecs"]
    for q in vecs:
        for p in vecs:
            assert abs(float(runtime.colbert_score(q, p)) - plain_colbert(q, p)) <= 1e-6
    pairs = [(a, b) for a in texts for b in texts]
    scores = runtime.compute_score(pairs, batch_size=1)  # batch 1: no upstream padding, plain MaxSim
    qv = runtime.encode_queries([a for a, _ in pairs], return_colbert_vecs=True)["colbert_vecs"]
    pv = runtime.encode_corpus([b for _, b in pairs], return_colbert_vecs=True)["colbert_vecs"]
    np.testing.assert_allclose(scores["colbert"], [plain_colbert(q, p) for q, p in zip(qv, pv)], atol=1e-6)


def test_rerank_orders_by_plain_maxsim(runtime):
    passages = ["What is BGE M3?", "北京是中国的首都。", "", "hello hello world", "x " * 200, "BGE"]
    ranked = runtime.rerank("What is BGE?", passages, top_k=4)
    q = runtime.encode_queries("What is BGE?", return_colbert_vecs=True)["colbert_vecs"]
    pv = runtime.encode(passages, return_colbert_vecs=True)["colbert_vecs"]
    plain = [plain_colbert(q, p) for p in pv]
    assert [i for i, _ in ranked] == list(np.argsort(plain)[::-1][:4])
    np.testing.assert_allclose([s for _, s in ranked], sorted(plain, reverse=True)[:4], atol=1e-6)
    assert len(runtime.rerank("q", passages)) == len(passages)
    with pytest.raises(ValueError, match="top_k"):
        runtime.rerank("q", passages, top_k=0)
