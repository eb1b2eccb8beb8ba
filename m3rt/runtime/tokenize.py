"""Tokenization with the Rust `tokenizers` library straight from tokenizer.json (no transformers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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

    def encode_counting_cuts(self, texts: list[str], max_length: int) -> tuple[list[np.ndarray], np.ndarray]:
        """As encode, with a bool per text: True where the text was cut to fit max_length."""
        if self.limit is not None and max_length > self.limit:
            raise ValueError(f"max_length={max_length} is above the tokenizer's limit of {self.limit} tokens")
        try:
            encodings = self._base.encode_batch(texts)
        except TypeError:
            _raise_on_bad_text(texts)
            raise
        keep, suffix = max_length - self._suffix, self._suffix
        rows = []
        cut = np.zeros(len(encodings), dtype=bool)
        for i, e in enumerate(encodings):
            ids = np.asarray(e.ids, dtype=np.int64)
            if len(ids) > max_length:
                ids = np.concatenate([ids[:keep], ids[len(ids) - suffix:]]) if suffix else ids[:max_length]
                cut[i] = True
            elif e.overflowing:  # cut at the tokenizer's own limit
                cut[i] = True
            rows.append(ids)
        return rows, cut

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


def _raise_on_bad_text(texts: list[str]) -> None:
    """The tokenizers library refuses a str that is not valid Unicode with a TypeError naming no text."""
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text {i} is not valid Unicode: {text[e.start]!r} at character {e.start} "
                             f"({e.reason})") from None
