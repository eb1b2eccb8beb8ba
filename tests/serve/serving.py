"""A real `m3rt serve` on loopback for the serve tier's tests: started as the CLI starts it, in a subprocess,
its output in a file the tests can read (the access log), stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(artifact, *args, env: dict | None = None, health_headers: dict | None = None):
    """(url, process, log path) of a server started with `args`, ready when /health answers 200."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="m3rt-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "m3rt.cli", "serve", str(artifact), "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1, headers=health_headers).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {open(log.name).read()}")
        time.sleep(0.1)
    try:
        yield url, proc, log.name
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        os.unlink(log.name)


def post(url, path, body, **kw):
    kw.setdefault("timeout", 60)
    return httpx.post(f"{url}{path}", json=body, **kw)


def metric(url, name: str, **kw) -> float:
    lines = httpx.get(f"{url}/metrics", **kw).text.splitlines()
    return next(float(x.split()[-1]) for x in lines if x.startswith(name + " ") or x.startswith(name + "{"))


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MiB of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int, over: float) -> float:
    """CPU seconds (user + system, all threads) a process uses in the next `over` seconds."""
    def used() -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = used()
    time.sleep(over)
    return used() - before


def reset_peak(pid: int) -> None:
    """Start a process's peak resident size (VmHWM) afresh from its resident size now."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


class HealthWatch:
    """/health asked every `every` seconds on a thread of its own while the block runs: (status, seconds) each."""

    def __init__(self, url: str, every: float = 0.1):
        import threading

        self.url, self.every, self.answers = url, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                code = httpx.get(f"{self.url}/health", timeout=10).status_code
            except httpx.TransportError as e:
                code = repr(e)
            self.answers.append((code, round(time.perf_counter() - t, 3)))
            self._stop.wait(self.every)

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def healthy(self) -> bool:
        """Every answer a 200 within a second (and at least one answer)."""
        return bool(self.answers) and all(code == 200 and s < 1 for code, s in self.answers)
