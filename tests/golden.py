"""The runtime tier's golden data: a checked-in artifact of the tiny TEST model and FlagEmbedding's outputs on
these texts, recorded once by tests/data/record_golden.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
GOLDEN_ARTIFACT = DATA / "tiny-artifact"
GOLDEN_OUTPUTS = DATA / "tiny-golden.npz"
GOLDEN_TEXTS = [
    "What is BGE M3?",
    "BM25 is a bag-of-words retrieval function that ranks documents.",
    "北京是中国的首都。",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 80,  # past 512 tokens: cut as FlagEmbedding cuts
    "Numbers 0 1 2 3 <s> </s> symbols ! ? ; :",
]


def load_golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_OUTPUTS) as data:
        return {k: data[k] for k in data.files}


# fp32 through onnxruntime against PyTorch: ~1e-7 on one machine; other CPU classes sum in other orders.
TOL = 1e-5


def check_against_golden(out: dict, golden: dict) -> None:
    np.testing.assert_allclose(out["dense_vecs"], golden["dense"], atol=TOL)
    indptr = golden["sparse_indptr"]
    for i, weights in enumerate(out["lexical_weights"]):
        ids = golden["sparse_ids"][indptr[i]:indptr[i + 1]]
        assert [int(k) for k in weights] == ids.tolist(), f"text {i}: tokens or their order differ"
        np.testing.assert_allclose(list(weights.values()), golden["sparse_weights"][indptr[i]:indptr[i + 1]], atol=TOL)
    offsets = golden["colbert_offsets"]
    for i, vecs in enumerate(out["colbert_vecs"]):
        np.testing.assert_allclose(vecs, golden["colbert"][offsets[i]:offsets[i + 1]], atol=TOL)
