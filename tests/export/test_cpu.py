"""CPU class detection, `m3rt doctor`, and the class recorded with an export. Sample /proc/cpuinfo texts stand
for the classes this project runs on; the live machine is only required to give a known class."""

from __future__ import annotations

import json

import pytest

from m3rt.runtime.cpu import ARM_CLASSES, X86_CLASSES, classify, detect, parse_cpuinfo

XEON_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni
"""
EPYC_ZEN3 = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse4_2 avx avx2 fma f16c
"""
SAPPHIRE_RAPIDS = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16
"""
ALDER_LAKE = "model name\t: 12th Gen Intel(R) Core(TM) i7-1260P\nflags\t\t: avx2 fma avx_vnni\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm bf16\nCPU part\t: 0xd40\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


@pytest.mark.parametrize("text, arch, expected, exact", [
    (XEON_VNNI, "x86_64", "avx512-vnni", True),
    (EPYC_ZEN3, "x86_64", "avx2", False),
    (SAPPHIRE_RAPIDS, "x86_64", "amx", True),
    (ALDER_LAKE, "x86_64", "avx2-vnni", True),
    ("flags\t: sse4_2 avx\n", "x86_64", "x86-64", False),
    (GRAVITON3, "aarch64", "arm64-sve", True),
    (GRAVITON2, "aarch64", "arm64-dotprod", True),
    ("Features\t: fp asimd\n", "aarch64", "arm64-neon", False),
])
def test_classes_from_cpuinfo(text, arch, expected, exact):
    from m3rt.runtime.cpu import EXACT_INT8

    model, flags = parse_cpuinfo(text)
    assert classify(arch, flags) == expected
    assert (expected in EXACT_INT8) == exact
    if "model name" in text:
        assert model and "flags" not in model


def test_this_machine_has_a_known_class():
    cpu = detect()
    known = {name for name, _ in X86_CLASSES + ARM_CLASSES} | {"x86-64", "arm64", "unknown"}
    assert cpu.cls in known and cpu.cores >= 1 and cpu.model
    assert set(cpu.as_dict()) >= {"class", "flags", "model", "int8_exact"}


def test_doctor_reports_machine_backends_and_advice(capsys):
    from m3rt.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"cpu class     {detect().cls}" in out
    assert "backend       onnxruntime-cpu: can run here" in out
    assert "advice" in out
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backends"]["onnxruntime-cpu"] is None
    assert all(isinstance(why, str) and why for name, why in report["backends"].items()
               if name != "onnxruntime-cpu" and why is not None)
    assert report["cpu"]["class"] == detect().cls


def test_export_records_its_cpu_class_and_info_prints_it(tiny_artifact, capsys):
    from m3rt.artifact import read_manifest
    from m3rt.cli import main

    recorded = read_manifest(tiny_artifact).data["export_cpu"]
    assert recorded["class"] == detect().cls and isinstance(recorded["flags"], list)
    assert main(["info", str(tiny_artifact)]) == 0
    assert f"exported on   {recorded['class']}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_int8(tiny_model_dir, tmp_path_factory):
    from m3rt.export import export

    return export(tiny_model_dir, tmp_path_factory.mktemp("int8") / "artifact", precision="int8")


def _pretend_class(monkeypatch, cls):
    import dataclasses

    import m3rt.runtime.cpu as cpu

    real = cpu.detect()
    monkeypatch.setattr(cpu, "detect", lambda: dataclasses.replace(real, cls=cls))


def test_int8_carries_a_probe_and_same_class_skips_the_check(tiny_int8):
    from m3rt import M3Runtime
    from m3rt.artifact import PROBE, read_manifest

    manifest = read_manifest(tiny_int8)
    assert PROBE in manifest.data["files"] and manifest.probe_path.is_file()
    assert M3Runtime(tiny_int8).cpu_check is None


def test_int8_on_another_class_is_remeasured_at_load(tiny_int8, monkeypatch):
    from m3rt import M3Runtime
    from m3rt.artifact import read_manifest

    exported_on = read_manifest(tiny_int8).export_cpu_class
    _pretend_class(monkeypatch, "avx2" if exported_on != "avx2" else "avx512-vnni")
    metrics = M3Runtime(tiny_int8).cpu_check
    recorded = read_manifest(tiny_int8).data["validation"]["int8"]["metrics"]
    assert set(metrics) == set(recorded)
    assert metrics["dense_min_cosine"] >= 0.99 and metrics["sparse_top10_overlap"] >= 0.9


def test_int8_past_thresholds_on_another_class_is_refused_with_numbers(tiny_int8, monkeypatch):
    from m3rt import M3Runtime
    from m3rt.runtime import fidelity
    from m3rt.errors import ArtifactError

    _pretend_class(monkeypatch, "some-other-class")
    monkeypatch.setitem(fidelity.THRESHOLDS, "int8", [("dense_min_cosine", "min", 1.01)])
    with pytest.raises(ArtifactError, match=r"some-other-class.*dense_min_cosine 0\.\d+ \(below 1.01\)"):
        M3Runtime(tiny_int8)
    assert M3Runtime(tiny_int8, check_cpu_class=False).cpu_check is None


def test_int8_of_a_random_weight_model_past_thresholds_on_another_class_warns(tiny_model_dir, tmp_path, monkeypatch,
                                                                              caplog):
    """An export that recorded its misses without enforcing them (random-weight TEST models, `m3rt bench`) is
    not held to them at load either: a warning with the numbers."""
    from m3rt import M3Runtime
    from m3rt.runtime import fidelity
    from m3rt.export import export

    art = export(tiny_model_dir, tmp_path / "a", precision="int8", enforce_fidelity=False)
    _pretend_class(monkeypatch, "some-other-class")
    monkeypatch.setitem(fidelity.THRESHOLDS, "int8", [("dense_min_cosine", "min", 1.01)])
    with caplog.at_level("INFO", logger="m3rt.runtime"):
        metrics = M3Runtime(art).cpu_check
    assert metrics["dense_min_cosine"] < 1.01
    assert "dense_min_cosine" in caplog.text and "NOT ENFORCED" in caplog.text
    assert "within the thresholds" not in caplog.text
