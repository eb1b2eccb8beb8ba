"""Tokenization with the Rust `tokenizers` library straight from tokenizer.json (no transformers)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

# transformers' clean_up_tokenization, applied by HF decode when the tokenizer config asks for it.
_CLEANUPS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
    (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


class TextTokenizer:
    """Truncating tokenizer: texts -> int64 id arrays with the model's specials (`<s> ... </s>`).

    `tokenizers.Tokenizer` keeps truncation as mutable state, so each max_length gets its own copy,
    made under a lock: encode calls from several threads never change each other's settings.
    """

    def __init__(self, path: str | Path, pad_id: int, clean_up_spaces: bool = False):
        from tokenizers import Tokenizer

        self._json = Path(path).read_text(encoding="utf-8")
        self._base = Tokenizer.from_str(self._json)
        self._base.no_truncation()
        self._base.no_padding()
        self._by_length: dict[int, object] = {}
        self._lock = threading.Lock()
        self.pad_id = pad_id
        self.clean_up_spaces = clean_up_spaces

    @classmethod
    def from_model_dir(cls, root: Path, pad_id: int) -> "TextTokenizer":
        cfg = root / "tokenizer_config.json"
        clean = bool(json.loads(cfg.read_text()).get("clean_up_tokenization_spaces", False)) if cfg.is_file() else False
        return cls(root / "tokenizer.json", pad_id, clean)

    def _truncating(self, max_length: int):
        tok = self._by_length.get(max_length)
        if tok is None:
            from tokenizers import Tokenizer

            with self._lock:
                tok = self._by_length.get(max_length)
                if tok is None:
                    tok = Tokenizer.from_str(self._json)
                    tok.no_padding()
                    tok.enable_truncation(max_length)
                    self._by_length[max_length] = tok
        return tok

    def encode(self, texts: list[str], max_length: int) -> list[np.ndarray]:
        """One int64 array per text, `<s>`/`</s>` included and counted in max_length."""
        encodings = self._truncating(max_length).encode_batch(texts)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def token_to_id(self, token: str) -> int | None:
        return self._base.token_to_id(token)

    def decode_one(self, token_id: int) -> str:
        """As `transformers` decode([id]) does: specials kept, clean-up per the tokenizer config."""
        text = self._base.decode([int(token_id)], skip_special_tokens=False)
        if self.clean_up_spaces:
            for old, new in _CLEANUPS:
                text = text.replace(old, new)
        return text
