"""Concurrency helpers of the tests: a function in a forked child with a deadline, and workers on threads
whose exceptions are surfaced."""

from __future__ import annotations

import os
import pickle
import threading
import time

import pytest


def in_forked_child(fn, timeout: float = 60):
    """fn() run in a forked child; its pickled result, or a failure when the child hangs or dies."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, pickle.dumps(fn()))
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    assert data, "the forked child died without a result"
    return pickle.loads(data)


def errors_in_threads(work, n: int) -> list[BaseException]:
    """work(k) for k < n, each on its own thread; the exceptions they raised (lost otherwise)."""
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            work(k)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def default_sigint() -> None:
    """preexec_fn for a child that a test interrupts with SIGINT: a shell's background job (`cmd &`, nohup) starts
    with SIGINT ignored, which a child inherits, and Python then installs no KeyboardInterrupt handler. The
    test sends what Ctrl-C sends, so the child gets the default a terminal gives it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
