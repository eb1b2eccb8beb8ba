"""diagnose(): what this machine is, which backends can run here (and why not), and what to export for it.

Pure data; `m3rt doctor` prints it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def diagnose() -> dict:
    from m3rt.runtime.backends import BACKENDS, why_not
    from m3rt.runtime.cpu import detect

    cpu = detect()
    report = {"cpu": cpu.as_dict(), "memory_gib": _memory_gib(), "platform": platform.platform(),
              "python": platform.python_version(), "onnxruntime": _onnxruntime(), "gpus": _gpus(), "backends": {}}
    for name in BACKENDS:
        try:
            why = why_not(name)
        except Exception as e:  # noqa: BLE001 - a backend that cannot even be imported says so
            why = f"{type(e).__name__}: {e}"
        report["backends"][name] = why  # None: can run here
    report["advice"] = _advice(report, cpu)
    from m3rt.runtime.cpu_choice import ORDER, why

    report["auto"] = {precision: why(precision, cpu.cls) for precision in ORDER}
    return report


def _advice(report: dict, cpu) -> list[str]:
    advice = []
    from m3rt.runtime.backends import GPU_BACKENDS

    gpu_backends = [b for b in GPU_BACKENDS if report["backends"][b] is None]
    if gpu_backends:
        advice.append(f"GPU: export --precision fp16 (--attention standard for TensorRT); runs on {gpu_backends[0]}")
    if report["backends"].get("openvino-cpu") is None:
        bf16 = "avx512_bf16" in cpu.flags or "amx_bf16" in cpu.flags
        advice.append(f"CPU ({cpu.cls}), openvino installed: export --precision int8-static (calibrated int8, run "
                      "by OpenVINO) for the fastest gated CPU artifact"
                      + ("; --precision bf16 for fp32-near outputs at about half fp32's time" if bf16 else ""))
    elif cpu.arch.lower() in ("x86_64", "amd64", "aarch64", "arm64"):
        advice.append("pip install 'm3rt[openvino]' for --precision int8-static (calibrated int8) and bf16, faster "
                      "than onnxruntime's int8 on CPUs")
    if cpu.int8_exact:
        advice.append(f"CPU ({cpu.cls}): export --precision int8 for speed; int8 products are summed exactly here")
    elif cpu.arch.lower() in ("x86_64", "amd64"):
        advice.append(f"CPU ({cpu.cls}, no VNNI): export --precision int8 for speed. onnxruntime's default int8 "
                      "kernels saturate 16-bit sums here; m3rt runs its exact ones instead (session."
                      "x64quantprecision: u8 x u8 products), slower than the saturating ones but giving the same "
                      "numbers as VNNI machines")
    else:
        advice.append(f"CPU ({cpu.cls}): fp32 is the reference; export int8 on this machine so that its fidelity "
                      "gate measures this class")
    return advice


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _onnxruntime() -> dict:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return {"version": None, "error": str(e)}
    return {"version": ort.__version__, "providers": ort.get_available_providers()}


def _gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
