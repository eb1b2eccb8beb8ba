"""int8-static: the fp32 graph quantised with activation ranges calibrated on text (NNCF), as an OpenVINO
model that OpenVINO runs with its int8 kernels (runtime/openvino_engine.py).

The recipe, each part kept because the fidelity gate on the trained test model needs it:
- MIXED preset (asymmetric activations; the symmetric PERFORMANCE preset lost sparse top-10 overlap);
- model_type TRANSFORMER, which applies SmoothQuant to the MatMuls (outliers moved into the weights: without it
  static int8 failed the gate);
- the heads, every embedding table and layer 0 kept out (the heads are what the outputs are read from; NNCF
  would store the 250002-row word table as per-row int8 that OpenVINO's CPU plugin then fails to compile; layer
  0 is the most sensitive one, as for the dynamic int8 recipe);
- calibration: 128 texts of 8-256 tokens (export/calibration.py), one per sample.
Figures behind each choice: bench/results/design-notes.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("m3rt.export")

KEPT_NAMES = ["/colbert/MatMul", "/sparse/MatMul"]
KEPT_PATTERNS = [r"/backbone/embeddings/.*", r".*/layer\.0/.*", r"/m3rt_attention/0/.*"]
CALIBRATION_TEXTS = 128
# Calibration texts run up to this many tokens: the ranges they give held the gate with the widest margins, and
# each text costs NNCF two forward passes of the fp32 model (bench/results/design-notes.md).
CALIBRATION_MAX_TOKENS = 256


def quantize_static(fp32_graph: Path, out_xml: Path, tokenizer, max_length: int,
                    calibration: str | Path | None = None, samples: int = CALIBRATION_TEXTS) -> None:
    """Write the int8-static OpenVINO model of `fp32_graph` (standard attention) to out_xml (+ its .bin)."""
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        raise ImportError(f"--precision int8-static needs nncf and openvino: pip install 'm3rt[export,openvino]' "
                          f"({e})") from None
    from m3rt.export.calibration import calibration_texts

    max_length = min(max_length, CALIBRATION_MAX_TOKENS)
    texts = calibration_texts(tokenizer, samples, max_length, calibration)
    data = []
    for row in tokenizer.encode(texts, max_length):
        ids = row[None, :].astype(np.int64)
        data.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    log.info("calibrating static int8 on %d texts (%s)", len(data), calibration or "m3rt's calibration text")
    model = ov.Core().read_model(str(fp32_graph))
    nncf.set_log_level(logging.ERROR)  # a line per node kept out of int8 otherwise
    quantized = nncf.quantize(
        model, nncf.Dataset(data), subset_size=len(data), preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        ignored_scope=nncf.IgnoredScope(names=KEPT_NAMES, patterns=KEPT_PATTERNS, validate=False))
    # Weights kept out of int8 (the embedding tables above all) stored as fp16: half the file, and OpenVINO
    # computes them in bf16 or f32 anyway.
    ov.save_model(quantized, str(out_xml), compress_to_fp16=True)
