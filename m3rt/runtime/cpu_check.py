"""A CPU-dependent artifact (int8, int8-static, bf16) loaded on another CPU class than it was exported on: check it
still meets its thresholds.

int8 arithmetic differs between classes (runtime/cpu.py: exact sums with VNNI, saturating ones on AVX2), and bf16
is computed in bf16 only where the CPU has it, so the fidelity measured at export holds for the class it was
measured on. The artifact carries a probe batch and
the fp32 graph's outputs on it (artifact.PROBE); on another class one engine call on that batch measures the same
metrics here. Past a threshold is an error with the numbers: the artifact would silently lose accuracy.
"""

from __future__ import annotations

import logging

import numpy as np

from m3rt.artifact import CPU_DEPENDENT, OUTPUT_NAMES, Manifest
from m3rt.errors import ArtifactError

log = logging.getLogger("m3rt.runtime")


def check_int8_on_this_cpu(manifest: Manifest, engine) -> dict | None:
    """None when no check is needed (not CPU-dependent, no probe, or this machine has the class it was exported
    on); else the metrics measured here. Raises ArtifactError past a threshold."""
    if manifest.precision not in CPU_DEPENDENT or manifest.probe_path is None:
        return None  # before reading the CPU: fp32 and fp16 artifacts pay nothing at load
    from m3rt.runtime import fidelity
    from m3rt.runtime import cpu

    this_class = cpu.detect().cls
    if manifest.export_cpu_class == this_class:
        return None
    metrics = probe_fidelity(manifest, engine)
    failed = fidelity.past_thresholds(metrics, manifest.precision)
    where = f"this CPU ({this_class}; the artifact was exported and checked on {manifest.export_cpu_class})"
    numbers = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    if failed and not manifest.fidelity_enforced:
        # A TEST model with random weights: its export recorded misses without enforcing them either.
        log.warning("%s on %s: %s; NOT ENFORCED (its export was not held to the thresholds either)",
                    manifest.precision, where, ", ".join(failed))
        return metrics
    if failed:
        raise ArtifactError(f"{manifest.root}: the {manifest.precision} graph misses its fidelity thresholds on "
                            f"{where}: {', '.join(failed)}. Export {manifest.precision} on this machine, use the fp32 "
                            "artifact, or pass check_cpu_class=False to load it anyway")
    log.info("%s on %s: %s (within the thresholds)", manifest.precision, where, numbers)
    return metrics


def probe_fidelity(manifest: Manifest, engine) -> dict:
    """The fidelity metrics of this engine's outputs on the artifact's probe batch, against the fp32 outputs
    stored with it."""
    from m3rt.runtime import fidelity

    with np.load(manifest.probe_path) as probe:
        ids, mask = probe["input_ids"], probe["attention_mask"]
        reference = {name: probe[name] for name in OUTPUT_NAMES}
    got = engine.run(ids, mask, OUTPUT_NAMES)
    return fidelity.measure(reference, got, ids, mask, manifest.sparse_skip_ids)
