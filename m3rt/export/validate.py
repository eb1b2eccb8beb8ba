"""Export validation: the ONNX graph against the PyTorch model on a batch of mixed lengths (VALIDATION_TEXTS).

Tolerances (fp32 graph vs fp32 PyTorch; both compute the same ops, so only reduction order differs):
- dense_vecs, colbert_vecs (unit vectors): max abs error <= 1e-4
- sparse_weights: max abs error <= 1e-4 * max(1, max |reference weight|)
Over tolerance the export fails and names the output.
"""

from __future__ import annotations

import numpy as np

from m3rt.artifact import OUTPUT_NAMES
from m3rt.errors import ExportValidationError
from m3rt.runtime.batching import tokenized_batch

VALIDATION_TEXTS = [
    "",
    "BGE M3 is an embedding model supporting dense retrieval, lexical matching and multi-vector interaction.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "北京是中国的首都。东京是日本的首都。",
    "hello hello hello hello",
    " ".join(["Large language models are trained on large amounts of text."] * 20),
]
VALIDATION_MAX_LENGTH = 256
ABS_TOLERANCE = {"dense_vecs": 1e-4, "sparse_weights": 1e-4, "colbert_vecs": 1e-4}


def validation_batch(tokenizer, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """VALIDATION_TEXTS tokenized by the artifact's tokenizer (truncated) and right-padded into one batch."""
    return tokenized_batch(tokenizer, VALIDATION_TEXTS, min(max_length, VALIDATION_MAX_LENGTH))


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Max abs error and tolerance per output; raises naming every output over tolerance."""
    report, failed = {}, []
    for name in OUTPUT_NAMES:
        ref, got = reference[name], candidate[name]
        if ref.shape != got.shape:
            raise ExportValidationError(f"{name}: shape {got.shape} from the graph, {ref.shape} from PyTorch")
        err = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))) if ref.size else 0.0
        tol = ABS_TOLERANCE[name] * (max(1.0, float(np.max(np.abs(ref)))) if name == "sparse_weights" else 1.0)
        report[name] = {"max_abs_err": err, "tolerance": tol}
        if not err <= tol:  # NaN fails too
            failed.append(f"{name} (max abs error {err:.3g} > {tol:.3g})")
    if failed:
        raise ExportValidationError("exported graph disagrees with the PyTorch model: " + ", ".join(failed))
    return report
