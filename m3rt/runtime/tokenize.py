"""Tokenization with the Rust `tokenizers` library straight from tokenizer.json (no transformers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from m3rt.runtime.windows import first_window, max_window, prefix

# transformers' clean_up_tokenization, applied by HF decode when the tokenizer config asks for it.
_CLEANUPS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
    (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


class TextTokenizer:
    """Truncating tokenizer: texts -> int64 id arrays with the model's specials (`<s> ... </s>`).

    ONE `tokenizers.Tokenizer`, its settings fixed at construction (truncation at `limit`, no padding), so
    calls from several threads never change each other's settings and memory does not grow with the number
    of distinct max_length values asked for. A shorter max_length is cut in numpy exactly as the library's
    own truncation cuts: the leading specials, the first content tokens, the trailing specials.
    """

    def __init__(self, path: str | Path, pad_id: int, clean_up_spaces: bool = False, limit: int | None = None):
        from tokenizers import Tokenizer

        self._base = Tokenizer.from_str(Path(path).read_text(encoding="utf-8"))
        self._base.no_padding()
        if limit is None:
            self._base.no_truncation()
        else:
            self._base.enable_truncation(limit)
        self.limit = limit
        self.pad_id = pad_id
        self.clean_up_spaces = clean_up_spaces
        # How many special tokens the post-processor puts after the text (XLM-R's `</s>`, BERT's `[SEP]`).
        mask = self._base.encode("a").special_tokens_mask
        self._suffix = _trailing_ones(mask)

    @classmethod
    def from_manifest(cls, manifest) -> "TextTokenizer":
        """The artifact's tokenizer, truncating at its max_length (a bad file: an ArtifactError naming it)."""
        from m3rt.errors import ArtifactError

        try:
            return cls(manifest.tokenizer_path, manifest.pad_id, manifest.clean_up_tokenization_spaces,
                       limit=manifest.max_length)
        except Exception as e:  # the tokenizers library raises a bare Exception on a bad file
            raise ArtifactError(f"{manifest.tokenizer_path}: cannot be loaded as a tokenizer ({e})") from None

    @classmethod
    def from_model_dir(cls, root: Path, pad_id: int, limit: int | None = None) -> "TextTokenizer":
        cfg = root / "tokenizer_config.json"
        clean = bool(json.loads(cfg.read_text()).get("clean_up_tokenization_spaces", False)) if cfg.is_file() else False
        return cls(root / "tokenizer.json", pad_id, clean, limit)

    def encode(self, texts: list[str], max_length: int) -> list[np.ndarray]:
        """One int64 array per text, `<s>`/`</s>` included and counted in max_length."""
        return self.encode_counting_cuts(texts, max_length)[0]

    def encode_counting_cuts(self, texts: list[str], max_length: int, offset: int = 0) -> tuple[list[np.ndarray],
                                                                                                np.ndarray]:
        """As encode, with a bool per text: True where the text was cut to fit max_length.

        The work per text is bounded by max_length, not by the text's size: a text longer than a window of
        characters is tokenized from a prefix (windows.py), with the same ids as the whole text gives. `offset`:
        the index of texts[0] in the caller's whole input (errors name that index)."""
        if self.limit is not None and max_length > self.limit:
            raise ValueError(f"max_length={max_length} is above the tokenizer's limit of {self.limit} tokens")
        window, cap = first_window(max_length), max_window(max_length)
        rows: list = [None] * len(texts)
        cut = np.zeros(len(texts), dtype=bool)
        whole = [i for i, t in enumerate(texts) if not (isinstance(t, str) and len(t) > window)]
        for i, e in zip(whole, self._encode_batch([texts[i] for i in whole], whole, offset)):
            rows[i], cut[i] = self._cut(e, max_length)
        # Long texts: a prefix whose first max_length tokens a longer prefix confirms (both cut at a space).
        keep = max_length - self._suffix
        pending = {i: window for i, t in enumerate(texts) if rows[i] is None}
        trusted: dict[int, list[int]] = {}  # first tokens of a prefix that a longer one may confirm
        while pending:
            order = list(pending)
            cuts = [prefix(texts[i], pending[i]) for i in order]
            following = {}
            for i, (text, trust), e in zip(order, cuts, self._encode_batch([c[0] for c in cuts], order, offset)):
                if len(text) == len(texts[i]):  # the window reached the end: the whole text, exactly
                    rows[i], cut[i] = self._cut(e, max_length)
                    continue
                full = len(e.ids) > max_length or bool(e.overflowing)
                if full and trusted.get(i) == e.ids[:keep] or pending[i] >= cap:
                    # Confirmed, or a text with fewer than max_length tokens in its first `cap` characters (one
                    # giant "word"): read up to there, counted as cut.
                    rows[i], cut[i] = self._cut(e, max_length)[0], True
                    continue
                if full and trust:
                    trusted[i] = e.ids[:keep]
                following[i] = min(2 * pending[i], cap)
            pending = following
        return rows, cut

    def _encode_batch(self, texts: list[str], indices: list[int], offset: int = 0):
        """texts[k] is the caller's text offset + indices[k] (or a prefix of it): errors name that index."""
        try:
            return self._base.encode_batch(texts)
        except TypeError:
            _raise_on_bad_text(texts, [offset + i for i in indices])
            raise

    def _cut(self, encoding, max_length: int) -> tuple[np.ndarray, bool]:
        """An encoding's ids cut to max_length as the library's own truncation cuts, and whether it was cut."""
        ids = np.asarray(encoding.ids, dtype=np.int64)
        if len(ids) > max_length:
            keep, suffix = max_length - self._suffix, self._suffix
            return (np.concatenate([ids[:keep], ids[len(ids) - suffix:]]) if suffix else ids[:max_length]), True
        return ids, bool(encoding.overflowing)  # overflowing: cut at the tokenizer's own limit

    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to vocab_size - 1 (added tokens included)."""
        return self._base.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._base.token_to_id(token)

    def decode_one(self, token_id: int) -> str:
        """As `transformers` decode([id]) does: specials kept, clean-up per the tokenizer config."""
        text = self._base.decode([int(token_id)], skip_special_tokens=False)
        if self.clean_up_spaces:
            for old, new in _CLEANUPS:
                text = text.replace(old, new)
        return text


def _trailing_ones(mask: list[int]) -> int:
    n = 0
    for bit in reversed(mask):
        if bit != 1:
            break
        n += 1
    return n


def _raise_on_bad_text(texts: list[str], indices: list[int]) -> None:
    """The tokenizers library refuses a str that is not valid Unicode with a TypeError naming no text."""
    for i, text in zip(indices, texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text {i} is not valid Unicode: {text[e.start]!r} at character {e.start} "
                             f"({e.reason})") from None
