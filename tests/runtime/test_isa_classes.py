"""CPUID masks (m3rt/testing/isa_mask.c) hide the classes above them from both readers: m3rt's detector
(/proc/cpuinfo) and the CPUID instruction (numpy's dispatch, as onnxruntime's MLAS reads it). Skipped, with the
reason, where the machine cannot mask CPUID or is itself below the mask."""

from __future__ import annotations

import pytest

from isa_masked import mask_lib, run_masked, unavailable  # noqa: F401 - mask_lib is a fixture

pytestmark = unavailable


SEEN = """
import json
import numpy as np
try:
    from numpy._core._multiarray_umath import __cpu_features__ as f
except ImportError:  # numpy 1.x
    from numpy.core._multiarray_umath import __cpu_features__ as f
from m3rt.runtime.cpu import detect
print(json.dumps({"class": detect().cls, "numpy": {k: f[k] for k in ("AVX2", "AVX512F", "AVX512_ICL", "AVX512_SPR")}}))
"""


@pytest.mark.parametrize("mask, numpy_sees", [
    ("avx2", {"AVX2": True, "AVX512F": False, "AVX512_ICL": False}),
    ("avx512", {"AVX2": True, "AVX512F": True, "AVX512_ICL": False}),  # ICL includes VNNI
    ("avx512-vnni", {"AVX512F": True, "AVX512_SPR": False}),  # SPR includes AVX512-FP16
])
def test_mask_hides_the_classes_above_it(mask, numpy_sees, mask_lib):
    """Both readers see the mask: /proc/cpuinfo (m3rt's detector) and the CPUID instruction (numpy's dispatch,
    as onnxruntime's MLAS reads it)."""
    seen = run_masked(mask, mask_lib, SEEN)
    assert seen["class"] == mask
    assert {k: seen["numpy"][k] for k in numpy_sees} == numpy_sees
