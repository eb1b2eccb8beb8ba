"""One writer per output: an flock held on a hidden file beside the output (.NAME.m3rt-lock) for as long as a
job writes it. A second job on the same output fails at once, naming the process that holds it; a killed
holder's lock goes with its process (flock), so nothing stale ever blocks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from m3rt.errors import BusyError


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.m3rt-lock"


@contextlib.contextmanager
def exclusive_lock(out: str | Path, what: str, error: type[BusyError] = BusyError) -> Iterator[None]:
    """Hold the lock of `out` (a file or folder, which need not exist yet) while the block runs; `what` names
    the job in the error a second one gets ("an m3rt export", "an embed-corpus job")."""
    out = Path(os.path.realpath(out))  # one lock however the output is named (a link to it included)
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise error(f"{out}: {what}{f' ({holder})' if holder else ''} is writing it; wait for it to finish, "
                            "or write elsewhere") from None
            raise
        # The holder before us may have unlinked the file after we opened it: lock the file at the path.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode(errors="replace"))
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        return ""
