"""Bounded tokenizing: which prefix of a long text to tokenize so that the work per text follows max_length,
not the text's size (a 50 MB line costs what its first few thousand characters cost).

A prefix is cut just before a run of spaces. Every tokenizer m3rt reads splits words there (BERT's
pre-tokenizer on whitespace, XLM-R's Metaspace on the space it turns into "▁"), and normalisation does not act
across it, so the prefix's tokens are the whole text's first tokens. That is not taken on trust:
tokenize.TextTokenizer accepts a prefix's first max_length tokens only when a prefix twice as long gives the
same ones, and doubles the window until they agree (or the window is the whole text). Where a window holds no
space (unspaced scripts, one giant "word") the cut falls between two characters, never inside a combining
sequence, and the agreement check decides alone, from UNSPACED_MIN_CHARS on. Windows stop at max_window.
"""

from __future__ import annotations

import unicodedata

# Characters per token of the first window: ordinary text in every script holds more than max_length tokens in
# max_length * this many characters, so most long texts are read to about twice that and no further.
CHARS_PER_TOKEN = 8
# The first window is at least this long (short max_length values).
MIN_WINDOW_CHARS = 256
# A prefix cut inside a run without spaces is trusted only from this length on: WordPiece reads a word of more
# than 100 characters as one [UNK], so shorter prefixes of a long word can agree with each other and not with it.
UNSPACED_MIN_CHARS = 256
# Windows stop growing at this many characters per kept token: a text whose first max_window(max_length)
# characters hold fewer than max_length tokens (one giant "word", runs of characters a tokenizer reads as one
# unknown token) is read up to there and counted as cut. Ordinary text needs a few characters per token; the
# cap bounds what a hostile one costs by max_length.
MAX_CHARS_PER_TOKEN = 64


def first_window(max_length: int) -> int:
    return max(MIN_WINDOW_CHARS, max_length * CHARS_PER_TOKEN)


def max_window(max_length: int) -> int:
    return max(first_window(max_length), max_length * MAX_CHARS_PER_TOKEN)


def prefix(text: str, window: int) -> tuple[str, bool]:
    """(`text` itself when it fits in `window` characters; else its longest prefix within the window that ends
    just before a run of spaces (in the window's second half), else one that does not end inside a combining
    sequence; whether its first tokens can be trusted when a longer prefix agrees on them)."""
    if len(text) <= window:
        return text, True
    space = text.rfind(" ", window // 2, window + 1)
    if space > window // 2:
        while space > window // 2 and text[space - 1] == " ":
            space -= 1
        if text[space - 1] != " ":
            return text[:space], True
    end = window
    while end > window // 2 and _joins_previous(text[end]):
        end -= 1
    return text[:end], end >= UNSPACED_MIN_CHARS


def _joins_previous(char: str) -> bool:
    """A character that normalisation or the tokenizer reads with the one before it: combining marks, joiners
    and variation selectors."""
    return (unicodedata.combining(char) != 0 or unicodedata.category(char) in ("Mn", "Mc", "Me")
            or char in "\u200c\u200d" or "\ufe00" <= char <= "\ufe0f")
