"""Calibration text for static int8: what the activations' ranges are measured on.

m3rt ships its own (calibration.txt: paragraphs written for it in 25 languages and scripts, prose, code, SQL,
numbers, medical, legal, support text; no third-party text, so no licence to carry). A user's own text (one text
per line, their domain) replaces it with `m3rt export --calibration FILE`. Texts of mixed lengths are built from
consecutive lines, log-uniformly from a few tokens to max_length, so that short and long inputs both set the
ranges."""

from __future__ import annotations

import math
import random
from pathlib import Path

SHIPPED = Path(__file__).with_name("calibration.txt")


def read_lines(path: str | Path | None = None) -> list[str]:
    """The calibration file's non-empty lines (the shipped one by default); a clear error for a bad file."""
    path = Path(path) if path is not None else SHIPPED
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read as UTF-8 calibration text ({e})") from None
    if len(lines) < 8:
        raise ValueError(f"{path}: {len(lines)} non-empty lines; calibration needs at least 8 texts")
    return lines


def calibration_texts(tokenizer, n: int, max_length: int, path: str | Path | None = None,
                      seed: int = 0) -> list[str]:
    """n texts whose token counts spread log-uniformly over 8 .. max_length, each a run of consecutive lines."""
    lines = read_lines(path)
    rng = random.Random(seed)
    lo, hi = math.log(min(8, max_length)), math.log(max_length)
    texts = []
    for _ in range(n):
        want = int(math.exp(rng.uniform(lo, hi)))
        start = rng.randrange(len(lines))
        parts: list[str] = []
        while len(parts) < len(lines):
            parts.append(lines[(start + len(parts)) % len(lines)])
            if len(tokenizer.encode([" ".join(parts)], max_length)[0]) >= want:
                break
        texts.append(" ".join(parts))
    return texts
