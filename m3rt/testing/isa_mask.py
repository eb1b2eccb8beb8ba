"""Run a command on this machine's CPU as if it were of a lower x86-64 class (isa_mask.c, an LD_PRELOAD library).

Used by the tests and `bench/isa_classes.py` to check and time the kernels onnxruntime picks on AVX2 and
AVX-512 machines from one VNNI / AMX machine. Needs Linux's CPUID faulting (the "cpuid_fault" flag: Intel since
Ivy Bridge, and KVM guests) and a C compiler.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("isa_mask.c")
# What each mask leaves, from the most capable down; every class above it is hidden (isa_mask.c).
MASKS = ("avx512-vnni", "avx512", "avx2")


def unavailable() -> str | None:
    """Why the masks cannot run here, or None."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"needs Linux on x86-64 (this is {platform.system()} {platform.machine()})"
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError as e:
        return f"cannot read /proc/cpuinfo ({e})"
    if "cpuid_fault" not in flags.split():
        return "this CPU or hypervisor has no CPUID faulting (no cpuid_fault in /proc/cpuinfo)"
    if not (shutil.which("cc") or shutil.which("gcc")):
        return "no C compiler (cc) to build isa_mask.c"
    return None


def build(cache_dir: Path) -> Path:
    """The shared library, built once per source version into cache_dir."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    lib = Path(cache_dir) / f"isa_mask-{digest}.so"
    if not lib.is_file():
        lib.parent.mkdir(parents=True, exist_ok=True)
        partial = lib.with_suffix(f".{os.getpid()}.tmp")
        cc = shutil.which("cc") or shutil.which("gcc")
        done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(partial), str(SOURCE), "-ldl"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building {SOURCE.name} failed:\n{done.stderr}")
        partial.replace(lib)
    return lib


def environment(mask: str, lib: Path, base: dict | None = None) -> dict:
    """os.environ (or base) for a child process that sees the CPU as class `mask`."""
    if mask not in MASKS:
        raise ValueError(f"mask {mask!r}: expected one of {', '.join(MASKS)}")
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(lib), env.get("LD_PRELOAD", "")]))
    env["M3RT_ISA_MASK"] = mask
    return env
