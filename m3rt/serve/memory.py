"""Giving memory back to the system after big requests (glibc only; elsewhere `trim` does nothing).

glibc keeps freed heap memory for later allocations and raises its mmap threshold after large frees, so the
arrays and JSON of a big request stay resident once freed: RSS keeps the high-water mark of the biggest
request. malloc_trim returns the free pages of every arena. (Fixing the mmap threshold instead would return
large blocks at free, but then every engine call maps and faults in its activations afresh, which slowed the
load benchmark well past its tolerance: see bench/results/design-notes.md.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_libc = None
_trimming = threading.Lock()


def _glibc():
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim  # noqa: B018 - glibc only
            _libc = libc
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def trim() -> None:
    """Return free heap memory to the system; one trim at a time (a second caller skips: one is running)."""
    libc = _glibc()
    if libc is not None and _trimming.acquire(blocking=False):
        try:
            libc.malloc_trim(0)
        finally:
            _trimming.release()
