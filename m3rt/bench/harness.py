"""The one measurement harness of m3rt bench and every script under bench/: a timer (warm-up, repetitions,
a time budget, a device sync for GPUs), the summary of its samples, the run's record (date, commit, machine
with its CPU class, package versions), and a fresh-process runner for what must be measured cold.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from m3rt.bench import machine


def time_calls(fn: Callable[[], object], reps: int, *, warmup: int = 1, budget_s: float | None = None,
               sync: Callable[[], None] | None = None, on_call: Callable[[], None] | None = None) -> list[float]:
    """Seconds of up to `reps` calls of fn(), back to back after `warmup` untimed ones; stops early once the
    timed calls have taken `budget_s` (one is always made). `sync` (torch.cuda.synchronize) runs before each
    clock read, so asynchronous device work is counted; on_call after each call (progress)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    gc.collect()  # the warm-up's garbage must not be collected inside a timed call
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < reps:
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
        if on_call:
            on_call()
        if budget_s is not None and time.perf_counter() - started >= budget_s:
            break
    return times


def summarise(times: Sequence[float]) -> dict:
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {"reps": len(times), "p50_s": float(p50), "p90_s": float(p90), "p99_s": float(p99),
            "mean_s": float(np.mean(times)), "min_s": float(np.min(times)), "max_s": float(np.max(times)),
            "times_s": [float(t) for t in times]}


def run_record(packages: Sequence[str] = machine.PACKAGES) -> dict:
    """Where, when and with what a measurement ran: goes next to every figure."""
    return {"date": machine.utc_now(), "git_commit": machine.git_commit(), "machine": machine.machine_info(),
            "versions": machine.versions(packages)}


def in_fresh_process(module: str, *args: str, timeout: float = 1800) -> dict:
    """Run `python -m module args...` (a measurement that must start cold) and return the JSON object its
    last stdout line holds; its last stderr line on failure."""
    res = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError((res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1])
    return json.loads(res.stdout.strip().splitlines()[-1])
