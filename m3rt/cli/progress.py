"""A dependency-free progress line on stderr for long work (encoding large inputs, benchmarks), drawn by
the command line: library code reports progress through callbacks (RuntimeConfig.progress) and draws nothing.

Silent for work that finishes within FIRST_DRAW_S seconds; redraws in place on a terminal, and prints an
occasional plain line when stderr is a file or a pipe.
"""

from __future__ import annotations

import sys
import time


# Work shorter than this draws nothing.
FIRST_DRAW_S = 2.0


class Progress:
    def __init__(self, total: int | None, desc: str, enabled: bool = True, delay: float | None = None, stream=None,
                 unit: str = ""):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.delay = FIRST_DRAW_S if delay is None else delay
        self.unit = f" {unit}" if unit else ""
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self._drawn = False
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        interval = 0.2 if self._tty else 10.0
        unfinished = self.total is None or self.done < self.total
        if now - self.start < self.delay or (now - self._last < interval and unfinished):
            return
        self._last = now
        self._draw(now)

    def __call__(self, done: int, total: int | None = None) -> None:
        """The RuntimeConfig.progress callback: `done` texts so far of `total` (None: unknown)."""
        if total is not None:
            self.total = total
        self.update(done - self.done)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        width = 24
        if self.total:
            filled = int(width * min(self.done, self.total) / self.total)
            eta = f" ETA {(self.total - self.done) / rate:.0f}s" if rate > 0 and self.done < self.total else ""
            line = (f"{self.desc} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                    f"{rate:.1f}{self.unit}/s {elapsed:.0f}s{eta}")
        else:
            line = f"{self.desc} {self.done}{self.unit} {rate:.1f}{self.unit}/s {elapsed:.0f}s"
        self.stream.write(("\r" + line) if self._tty else (line + "\n"))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            if (self.total and self.done < self.total) or self._tty:
                self._draw(time.perf_counter())
            if self._tty:
                self.stream.write("\n")
            self.stream.flush()
