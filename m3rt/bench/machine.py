"""Where and with what a benchmark ran: CPU, platform, package versions and the git commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("m3rt", "onnxruntime", "torch", "transformers", "FlagEmbedding", "numpy", "tokenizers")
# Thread settings that change CPU timings; recorded so two runs can be compared.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")


def machine_info() -> dict:
    from m3rt.runtime.cpu import detect

    cpu = detect()
    return {
        "cpu": cpu.model,
        "cpu_class": cpu.cls,
        "cpu_flags": list(cpu.flags),
        # Set by m3rt/testing/isa_mask.py: this CPU with the classes above cpu_class hidden, not such a CPU.
        "isa_mask": os.environ.get("M3RT_ISA_MASK") or None,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "blas": _blas(),
        "env": {k: os.environ.get(k) for k in THREAD_ENV},
    }


def _blas() -> list[dict] | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def versions(packages=PACKAGES) -> dict[str, str | None]:
    found = {}
    for pkg in packages:
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            found[pkg] = None
    return found


def git_commit() -> str | None:
    """Short commit of the checkout m3rt runs from, "+dirty" when tracked files differ; outside git (a device
    machine given a copy of the tree) the GIT_COMMIT environment variable, else None."""
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        # --no-optional-locks: a read-only look that never takes the index lock from someone else's git.
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True,
                              timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return os.environ.get("GIT_COMMIT") or None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GIT_COMMIT") or None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
