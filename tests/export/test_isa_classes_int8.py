"""int8 per CPU class, on this machine's CPU with the classes above a mask hidden (m3rt/testing/isa_mask.c).

The subject here is the ISA, so the expectations are per class:
- every class: the tiny model's int8 export passes its enforced gate, with the same fidelity as on this machine
  (int8 sums are exact everywhere: VNNI / AMX natively, U8U8 kernels where only AVX2 / AVX-512 is there);
- AVX2: onnxruntime's default U8S8 kernels saturate, and measurably lose fidelity (an AMD EPYC measured the
  same numbers, issue 9); the runtime's session setting is what avoids it.
Skipped, with the reason, where the machine cannot mask CPUID or is itself below the mask.
"""

from __future__ import annotations

import json

import pytest

from isa_masked import mask_lib, run_masked, unavailable  # noqa: F401 - mask_lib is a fixture

pytestmark = unavailable

EXPORT_AND_PROBE = """
import json, sys
from m3rt import M3Runtime
from m3rt.export import export
from m3rt.runtime.cpu_check import probe_fidelity

source, out, saturating = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
art = export(source, out, precision="int8")  # the gate is enforced: raises past a threshold
gate = json.loads((art / "manifest.json").read_text())["validation"]["int8"]["metrics"]
# onnxruntime's default kernels, as a program that does not set the precision mode gets them
rt = M3Runtime(art, session_config={"session.x64quantprecision": "0"}) if saturating else None
print(json.dumps({"gate": gate, "default_kernels": probe_fidelity(rt.manifest, rt.engine) if rt else None}))
"""


LOAD = """
import json, sys
from m3rt import M3Runtime
rt = M3Runtime(sys.argv[1])
print(json.dumps({"checked": rt.cpu_check}))
"""


@pytest.mark.parametrize("mask", ["avx2", "avx512"])
def test_int8_export_gate_passes_with_exact_sums(mask, mask_lib, tiny_model_dir, tmp_path):
    from m3rt.export import export

    masked = run_masked(mask, mask_lib, EXPORT_AND_PROBE, str(tiny_model_dir), str(tmp_path / mask), "0")
    native = export(tiny_model_dir, tmp_path / "native", precision="int8")
    here = json.loads((native / "manifest.json").read_text())["validation"]["int8"]["metrics"]
    # The int8 sums are exact on both, so only float rounding (fp32 kernels per class) separates them.
    for name, value in here.items():
        assert masked["gate"][name] == pytest.approx(value, abs=2e-3), name


def test_avx2_default_kernels_saturate(mask_lib, tiny_model_dir, tmp_path):
    """The control: without the precision mode, AVX2's U8S8 kernels lose fidelity on the same artifact
    (the AMD EPYC of issue 9 measured sparse_max_rel_err 0.2737 on the fidelity batch; here the probe batch)."""
    got = run_masked("avx2", mask_lib, EXPORT_AND_PROBE, str(tiny_model_dir), str(tmp_path / "a"), "1")
    exact, default = got["gate"], got["default_kernels"]
    assert default["sparse_max_rel_err"] > exact["sparse_max_rel_err"] + 0.05
    assert default["dense_min_cosine"] < exact["dense_min_cosine"]


def test_artifact_from_this_class_is_rechecked_and_passes_on_avx2(mask_lib, tiny_model_dir, tmp_path):
    from m3rt.export import export

    art = export(tiny_model_dir, tmp_path / "native", precision="int8")
    checked = run_masked("avx2", mask_lib, LOAD, str(art))["checked"]
    assert checked is not None, "another class: the probe must be re-measured at load"
    assert checked["sparse_max_rel_err"] <= 0.2 and checked["dense_min_cosine"] >= 0.99
