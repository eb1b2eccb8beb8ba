"""The checks every caller of the runtime applies to what it is given: texts and (query, passage) pairs.
A wrong type is a TypeError naming the argument and the index, never a failure deep in the tokenizer."""

from __future__ import annotations

from collections.abc import Sequence


def check_texts(texts, what: str = "texts", offset: int = 0) -> list[str]:
    """`texts` as a list of str; `offset`: the index of its first item in the caller's whole input."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(f"{what} must be a str or a list of str, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i + offset}] is {type(t).__name__}, expected str")
    return list(texts)


def check_pairs(pairs, what: str = "sentence_pairs") -> list[tuple[str, str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"{what} must be a (query, passage) pair or a list of them, got {type(pairs).__name__}")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise TypeError(f"{what}[{i}] must be a (query, passage) pair of str, got {pair!r:.80}")
    return [tuple(p) for p in pairs]
