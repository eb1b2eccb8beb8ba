"""Benchmark inputs: deterministic texts that tokenize to an exact number of tokens, `<s>`/`</s>` included.

The bge-m3 tokenizer (SentencePiece with a whitespace Metaspace pre-tokenizer) tokenizes each
space-separated word on its own, so a text's token count is 2 + the sum of its words' counts. Texts are
built word by word to hit the count exactly, without relying on truncation, so the same texts are
N tokens long whatever max_length a backend is given; every text is then checked with the tokenizer.
"""

from __future__ import annotations

import numpy as np

from m3rt.runtime.tokenize import TextTokenizer

# Fixed vocabulary: mostly English, a few words in other scripts so the tokenizer is not only on ASCII.
WORDS = (
    "the of and to in is was for on that with as by at from it an be this which or are were has have not "
    "but they his her its their been also new one two first more other after time city year people when "
    "between during under about such into most used many some these than only over through while where "
    "search engine retrieval model dense sparse vector token embedding language query document passage "
    "ranking relevance index score multilingual training learning network layer attention transformer "
    "history science music river mountain village government university football station "
    "recherche rapide renard chien Suche schnelle Fuchs Hund búsqueda zorro perro "
    "поиск лиса собака 北京 首都 狐狸 東京 日本 여우 검색 الكلب الثعلب कुत्ते"
).split()


class ExactLengthTexts:
    """Makes texts of exactly n tokens (specials included) for one tokenizer."""

    def __init__(self, tokenizer: TextTokenizer, model_max_length: int):
        self.tokenizer = tokenizer
        self.model_max_length = model_max_length
        counts = [len(ids) - 2 for ids in tokenizer.encode(list(WORDS), model_max_length)]
        self.words = [(w, c) for w, c in zip(WORDS, counts) if c >= 1]
        ones = [w for w, c in self.words if c == 1]
        if not ones:
            raise RuntimeError("no word of the benchmark vocabulary is a single token: cannot hit exact lengths")
        # Closes the gap when the next random word would overshoot.
        self.filler = ones[0]

    def text(self, n_tokens: int, rng: np.random.Generator) -> str:
        left = n_tokens - 2
        parts = []
        while left > 0:
            word, count = self.words[int(rng.integers(len(self.words)))]
            if count > left:
                word, count = self.filler, 1
            parts.append(word)
            left -= count
        return " ".join(parts)

    def texts(self, lengths, rng: np.random.Generator) -> list[str]:
        texts = [self.text(int(n), rng) for n in lengths]
        self.check(texts, lengths)
        return texts

    def check(self, texts: list[str], lengths) -> None:
        """Every text tokenizes (untruncated) to its requested length, else a RuntimeError naming the first miss."""
        got = [len(ids) for ids in self.tokenizer.encode(texts, self.model_max_length)]
        for i, (want, have) in enumerate(zip(lengths, got)):
            if int(want) != have:
                raise RuntimeError(f"benchmark text {i} tokenizes to {have} tokens, not the {int(want)} asked for: "
                                   f"{texts[i][:80]!r}")
