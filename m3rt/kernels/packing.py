"""Packed ragged layout: many [n_i, d] token matrices stored as one [sum n_i, d] array plus offsets.

Row range of item i is offsets[i]:offsets[i + 1]. Everything here is numpy and host-side; the
checks run before any kernel launch so that bad input fails with a readable ValueError.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pack(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate [n_i, d] arrays into (packed [sum n_i, d], offsets int64 [len + 1])."""
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("pack: need at least one array to know the dimension d")
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(f"pack: array {i} has shape {a.shape}, expected [n, d]")
    d = arrays[0].shape[1]
    for i, a in enumerate(arrays):
        if a.shape[1] != d:
            raise ValueError(f"pack: array {i} has d={a.shape[1]}, array 0 has d={d}")
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    dtype = np.result_type(*arrays)
    packed = np.empty((int(offsets[-1]), d), dtype=dtype)
    for a, lo, hi in zip(arrays, offsets[:-1], offsets[1:]):
        packed[lo:hi] = a
    return packed, offsets


def check_offsets(offsets, total_rows: int, name: str) -> np.ndarray:
    """Validate offsets for a packed array with total_rows rows; return them as int64 numpy.

    Accepts numpy arrays, sequences and torch tensors (copied to the host: offsets are small and
    their values must be checked before a launch anyway).
    """
    if hasattr(offsets, "detach") and hasattr(offsets, "cpu"):  # torch tensor, without importing torch
        offsets = offsets.detach().cpu().numpy()
    off = np.asarray(offsets)
    if off.ndim != 1:
        raise ValueError(f"{name}: offsets must be 1-D, got shape {off.shape}")
    if off.size == 0:
        raise ValueError(f"{name}: offsets must have at least one entry (a leading 0)")
    if not (np.issubdtype(off.dtype, np.integer) and off.dtype != np.bool_):
        raise ValueError(f"{name}: offsets must be integers, got dtype {off.dtype}")
    off = off.astype(np.int64, copy=False)
    if off[0] != 0:
        raise ValueError(f"{name}: offsets must start at 0, got {int(off[0])}")
    if off.size > 1 and np.any(off[1:] < off[:-1]):
        bad = int(np.flatnonzero(off[1:] < off[:-1])[0])
        raise ValueError(f"{name}: offsets must be non-decreasing (offsets[{bad + 1}] < offsets[{bad}])")
    if off[-1] != total_rows:
        raise ValueError(f"{name}: last offset {int(off[-1])} != number of rows {total_rows}")
    return off
