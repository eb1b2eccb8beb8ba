"""The runtime under load: long inputs, both attention paths, bounded memory, concurrent callers."""

from __future__ import annotations

import random

import numpy as np

from forking import errors_in_threads
from m3rt.bench.long_input import rss_mb  # VmRSS of this process, MB
from m3rt.testing.tiny_model import CORPUS

ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)


def mixed_texts(n: int, seed: int, max_words: int = 300) -> list[str]:
    words = " ".join(CORPUS).split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, max_words))) for _ in range(n)]


def test_8192_token_text_encodes(runtime):
    text = " ".join(mixed_texts(1, seed=1, max_words=1)[0] for _ in range(9000))
    out = runtime.encode(text, max_length=8192, **ALL)
    assert out["colbert_vecs"].shape == (8191, 64)
    assert np.isfinite(out["dense_vecs"]).all()


def test_padded_and_unpadded_attention_paths_agree(runtime):
    """Alone, a text runs the graph's no-padding (flash) attention; beside a longer one, the masked
    kernel. Both must give the same outputs."""
    short, long = mixed_texts(2, seed=2)
    alone = runtime.encode([short], **ALL)
    padded = runtime.encode([short, long + " " + long], batch_size=2, **ALL)
    np.testing.assert_allclose(alone["dense_vecs"][0], padded["dense_vecs"][0], atol=1e-5)
    np.testing.assert_allclose(alone["colbert_vecs"][0], padded["colbert_vecs"][0], atol=1e-5)
    assert alone["lexical_weights"][0].keys() == padded["lexical_weights"][0].keys()


def test_memory_stays_flat_over_mixed_calls(runtime):
    texts = mixed_texts(300, seed=3)
    rng = random.Random(4)
    for i in range(40):  # warm up: allocator and tokenizer caches reach their working size
        runtime.encode(texts[i : i + rng.randint(1, 8)], **ALL)
    start = rss_mb()
    for i in range(300):
        j = rng.randrange(len(texts))
        runtime.encode(texts[j : j + rng.randint(1, 8)], max_length=rng.choice([32, 128, 512]), **ALL)
    growth = rss_mb() - start
    assert growth < 40, f"RSS grew {growth:.1f} MB over 300 mixed-length calls"


def test_concurrent_encode_gives_the_same_results(runtime):
    groups = [mixed_texts(12, seed=10 + k) for k in range(4)]
    expected = [runtime.encode(g, batch_size=4, **ALL) for g in groups]
    results: dict[int, dict] = {}

    def work(k: int) -> None:
        for _ in range(3):
            results[k] = runtime.encode(groups[k], batch_size=4, **ALL)

    errors = errors_in_threads(work, 4)
    assert not errors, errors
    for k, exp in enumerate(expected):
        np.testing.assert_allclose(results[k]["dense_vecs"], exp["dense_vecs"], atol=1e-6)
        for a, b in zip(results[k]["colbert_vecs"], exp["colbert_vecs"]):
            np.testing.assert_allclose(a, b, atol=1e-6)
        assert results[k]["lexical_weights"] == exp["lexical_weights"]
