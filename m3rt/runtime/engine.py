"""The engine interface: padded ids + mask in, raw graph outputs out. No head logic lives here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Engine(Protocol):
    name: str
    # Padded tokens per call this engine runs best with, unless RuntimeConfig.max_batch_tokens says otherwise.
    batch_tokens: int

    def run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run one padded batch ([B, S] int64 each); return the named graph outputs as host arrays."""
        ...
