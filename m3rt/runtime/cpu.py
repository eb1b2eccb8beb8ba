"""This machine's CPU class: which vector and matrix instructions onnxruntime's kernels can use here.

The class decides how int8 runs: with VNNI (or AMX, or Arm's dot product) u8 x s8 products are summed in
int32, exactly; on AVX2 without VNNI onnxruntime's U8S8 kernels use VPMADDUBSW, whose int16 pair sums
saturate (onnxruntime's quantization documentation), so an int8 graph can give other numbers there.
Read from /proc/cpuinfo (Linux) or sysctl (macOS); standard library only.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Flags worth reporting, as Linux names them.
X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")
# From the most capable down; the first whose flags are all present names the class.
X86_CLASSES = (
    ("amx", ("amx_tile", "amx_int8")),
    ("avx512-bf16", ("avx512f", "avx512_bf16")),
    ("avx512-vnni", ("avx512f", "avx512_vnni")),
    ("avx512", ("avx512f", "avx512bw")),
    ("avx2-vnni", ("avx2", "fma", "avx_vnni")),
    ("avx2", ("avx2", "fma")),
)
ARM_CLASSES = (("arm64-sve", ("sve",)), ("arm64-dotprod", ("asimddp",)), ("arm64-neon", ("asimd",)))
EXACT_INT8 = ("amx", "avx512-bf16", "avx512-vnni", "avx2-vnni", "arm64-sve", "arm64-dotprod")
# macOS names the Arm features under hw.optional.arm.
DARWIN_ARM = {"asimd": "hw.optional.AdvSIMD", "asimddp": "hw.optional.arm.FEAT_DotProd",
              "i8mm": "hw.optional.arm.FEAT_I8MM", "bf16": "hw.optional.arm.FEAT_BF16"}


@dataclass(frozen=True)
class CpuInfo:
    cls: str  # one of the class names above, "x86-64" (older than AVX2) or "unknown"
    arch: str
    model: str
    flags: tuple[str, ...]  # the reported flags behind the class (of X86_FLAGS / ARM_FLAGS)
    cores: int

    @property
    def int8_exact(self) -> bool:
        """Whether int8 products are summed without saturation here (VNNI, AMX, Arm dot product)."""
        return self.cls in EXACT_INT8

    def as_dict(self) -> dict:
        return {"class": self.cls, "arch": self.arch, "model": self.model, "flags": list(self.flags),
                "cores": self.cores, "int8_exact": self.int8_exact}


def classify(arch: str, flags: set[str]) -> str:
    arch = arch.lower()
    if arch in ("x86_64", "amd64"):
        return next((name for name, need in X86_CLASSES if all(f in flags for f in need)), "x86-64")
    if arch in ("aarch64", "arm64"):
        return next((name for name, need in ARM_CLASSES if all(f in flags for f in need)), "arm64")
    return "unknown"


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo: x86 "flags", Arm "Features"."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def detect() -> CpuInfo:
    arch = platform.machine() or "unknown"
    model, flags = "", set()
    system = platform.system()
    if system == "Linux":
        try:
            model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            pass
    elif system == "Darwin":
        model = _sysctl("machdep.cpu.brand_string") or ""
        if arch == "arm64":
            flags = {flag for flag, key in DARWIN_ARM.items() if _sysctl(key) == "1"}
        else:
            flags = set((_sysctl("machdep.cpu.features") or "").lower().split()) | \
                set((_sysctl("machdep.cpu.leaf7_features") or "").lower().split())
            flags = {{"avx2.0": "avx2", "avx1.0": "avx", "avx512vnni": "avx512_vnni"}.get(f, f) for f in flags}
    known = X86_FLAGS + ARM_FLAGS
    return CpuInfo(cls=classify(arch, flags), arch=arch, model=model or platform.processor() or "unknown",
                   flags=tuple(f for f in known if f in flags), cores=os.cpu_count() or 1)


def _sysctl(key: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
