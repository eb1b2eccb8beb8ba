"""Record the runtime tier's golden data, once: the tiny TEST model's artifact (tests/data/tiny-artifact) and
FlagEmbedding's outputs on GOLDEN_TEXTS (tests/data/tiny-golden.npz). Needs the `test` extra:

    python tests/data/record_golden.py

The parity tier checks that these still agree with FlagEmbedding and with a fresh export
(tests/runtime/test_golden.py, tests/parity/test_golden_parity.py), so a drift in the tiny model or the exporter shows up there.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from golden import GOLDEN_ARTIFACT, GOLDEN_OUTPUTS, GOLDEN_TEXTS  # noqa: E402


def flag_outputs(model_dir: Path) -> dict[str, np.ndarray]:
    from FlagEmbedding import BGEM3FlagModel

    model = BGEM3FlagModel(str(model_dir), use_fp16=False, devices="cpu")
    out = model.encode(GOLDEN_TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    ids = [np.array([int(k) for k in d], dtype=np.int64) for d in out["lexical_weights"]]
    weights = [np.array(list(d.values()), dtype=np.float32) for d in out["lexical_weights"]]
    return {
        "dense": np.asarray(out["dense_vecs"], dtype=np.float32),
        "sparse_indptr": np.concatenate([[0], np.cumsum([len(i) for i in ids])]).astype(np.int64),
        "sparse_ids": np.concatenate(ids), "sparse_weights": np.concatenate(weights),
        "colbert_offsets": np.concatenate([[0], np.cumsum([len(v) for v in out["colbert_vecs"]])]).astype(np.int64),
        "colbert": np.concatenate(out["colbert_vecs"]).astype(np.float32),
    }


def main() -> None:
    from m3rt.export import export
    from m3rt.testing.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny")
        if GOLDEN_ARTIFACT.exists():
            shutil.rmtree(GOLDEN_ARTIFACT)
        export(model, GOLDEN_ARTIFACT)
        np.savez(GOLDEN_OUTPUTS, **flag_outputs(model))
    print(GOLDEN_ARTIFACT, GOLDEN_OUTPUTS)


if __name__ == "__main__":
    main()
