"""Running code under a CPUID mask (m3rt/testing/isa_mask.c) for the ISA-class tests of the runtime and export
tiers: the classes in order, whether this machine is above a mask, and a masked child process's JSON answer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from m3rt.runtime.cpu import detect
from m3rt.testing import isa_mask

ORDER = ("avx2", "avx512", "avx512-vnni", "avx512-bf16", "amx")
unavailable = pytest.mark.skipif(isa_mask.unavailable() is not None, reason=f"ISA masks: {isa_mask.unavailable()}")


def below_this_machine(mask: str) -> bool:
    here = detect().cls
    return here in ORDER and ORDER.index(here) > ORDER.index(mask)


@pytest.fixture(scope="module")
def mask_lib(tmp_path_factory):
    return isa_mask.build(tmp_path_factory.mktemp("isa_mask"))


def run_masked(mask: str, lib, code: str, *args: str) -> dict:
    if not below_this_machine(mask):
        pytest.skip(f"this machine is {detect().cls}: nothing above {mask} to hide")
    done = subprocess.run([sys.executable, "-c", code, *args], env=isa_mask.environment(mask, lib),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
