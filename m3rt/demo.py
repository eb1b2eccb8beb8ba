"""`m3rt demo`: build the tiny TEST model, export it, encode a few texts and print the three outputs.

Works on a fresh machine with no network: nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("m3rt.demo")

DEMO_TEXTS = [
    "What is BGE M3?",
    "BGE M3 is an embedding model supporting dense retrieval, lexical matching and multi-vector interaction.",
    "北京是中国的首都。",
]


def demo(out: str | Path = "m3rt-demo", texts: list[str] | None = None) -> dict:
    """Build + export the tiny model under `out`, encode `texts`, print a summary and return the outputs."""
    from m3rt import M3Runtime
    from m3rt.export import export
    from m3rt.testing.tiny_model import build_tiny_model

    out = Path(out)
    texts = texts or DEMO_TEXTS
    log.info("building the tiny TEST model (random weights) in %s", out / "tiny-model")
    model_dir = build_tiny_model(out / "tiny-model")
    artifact = export(model_dir, out / "tiny-artifact", overwrite=True)
    rt = M3Runtime(artifact)
    result = rt.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    np.set_printoptions(precision=4, suppress=True, linewidth=100)
    print(f"artifact: {artifact}  (tiny TEST model: random weights, meaningless embeddings)")
    for i, text in enumerate(texts):
        dense, lexical, colbert = result["dense_vecs"][i], result["lexical_weights"][i], result["colbert_vecs"][i]
        top = sorted(rt.convert_id_to_token(lexical).items(), key=lambda kv: -kv[1])[:5]
        print(f"\n[{i}] {text!r}")
        print(f"  dense_vecs      shape {dense.shape}, norm {np.linalg.norm(dense):.4f}, first {dense[:6]}")
        print(f"  lexical_weights {len(lexical)} tokens, top {[(t, round(float(w), 4)) for t, w in top]}")
        print(f"  colbert_vecs    shape {colbert.shape}")
    scores = rt.compute_score([(texts[0], texts[1]), (texts[0], texts[2])])
    print("\ncompute_score(q, p) for", [(0, 1), (0, 2)], {k: [round(v, 4) for v in vals] for k, vals in scores.items()})
    return result
