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
