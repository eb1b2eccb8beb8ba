"""The engine contract (after Polygraphy's runners and TEI's backends): padded ids + mask in, raw graph
outputs out; no head logic lives here.

An engine class says why it cannot run an artifact here (`why_not`: its packages, the device, the artifact)
before anything heavy is imported; an instance allocates in `open` and frees in `close` (or as a context
manager), and declares the `limits` of what it was built for, which the batch planner obeys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from m3rt.artifact import Manifest
from m3rt.errors import BackendError


@dataclass(frozen=True)
class EngineLimits:
    """What one engine call may hold; None: no limit of the engine's own."""

    max_rows: int | None = None
    max_tokens: int | None = None  # padded tokens: rows x longest row
    padded: bool = True  # rows are right-padded to the longest (every backend here)
    # (batch, sequence) ranges an engine was built for (TensorRT profiles): every call fits one of them.
    buckets: tuple = ()


class Engine:
    name: ClassVar[str]
    # Padded tokens per call this engine runs best with, unless RuntimeConfig.max_batch_tokens says otherwise.
    preferred_batch_tokens: ClassVar[int]
    # Runs on a GPU: the host's work (tokenizing) is worth overlapping with it; use_fp16 applies.
    on_gpu: ClassVar[bool] = False
    # run() calls the pipelined executor (runtime/executor.py) keeps in flight at once: above 1 only where calls
    # overlap usefully (a GPU engine: one call's host copies during another's kernels); 1 on the CPU, where one
    # call already uses every core.
    concurrent_calls: ClassVar[int] = 1

    def __init__(self, manifest: Manifest, config):
        self.manifest, self.config = manifest, config
        self.is_open = False

    # ---------------------------------------------------------------- what can run
    @classmethod
    def missing(cls) -> str | None:
        """Why this backend cannot run on this machine (a package, a provider, a device), or None."""
        return None

    @classmethod
    def unsuitable(cls, manifest: Manifest) -> str | None:
        """Why this backend cannot run this artifact, or None."""
        return None

    @classmethod
    def why_not(cls, manifest: Manifest) -> str | None:
        return cls.missing() or cls.unsuitable(manifest)

    # ---------------------------------------------------------------- lifecycle
    def open(self) -> "Engine":
        if not self.is_open:
            self._open()
            self.is_open = True
        return self

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._close()

    def __enter__(self) -> "Engine":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    @property
    def limits(self) -> EngineLimits:
        return EngineLimits()

    # ---------------------------------------------------------------- running
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run one padded batch ([B, S] int64 each); return the named graph outputs as host arrays."""
        if not self.is_open:
            raise BackendError(f"the {self.name} engine is closed")
        return self._run(input_ids, attention_mask, outputs)

    def _run(self, input_ids, attention_mask, outputs) -> dict[str, np.ndarray]:
        raise NotImplementedError
