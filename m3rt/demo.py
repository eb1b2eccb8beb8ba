"""`m3rt demo`: build the tiny TEST model, export it, encode a few texts and print the three outputs.

Works on a fresh machine with no network: nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("m3rt.demo")

DEMO_TEXTS = [
    "What is BGE M3?",
    "BGE M3 is an embedding model supporting dense retrieval, lexical matching and multi-vector interaction.",
    "北京是中国的首都。",
]


def demo(out: str | Path = "m3rt-demo", texts: list[str] | None = None) -> dict:
    """Build + export the tiny model under `out`, encode `texts`, and return what `m3rt demo` prints: the
    artifact, per text its three outputs (and top lexical tokens), and compute_score on two pairs."""
    from m3rt import M3Runtime
    from m3rt.export import export
    from m3rt.testing.tiny_model import build_tiny_model

    out = Path(out)
    texts = texts or DEMO_TEXTS
    log.info("building the tiny TEST model (random weights) in %s", out / "tiny-model")
    model_dir = build_tiny_model(out / "tiny-model")
    artifact = export(model_dir, out / "tiny-artifact", overwrite=True)
    with M3Runtime(artifact) as rt:
        result = rt.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
        rows = []
        for i, text in enumerate(texts):
            lexical = result["lexical_weights"][i]
            top = sorted(rt.convert_id_to_token(lexical).items(), key=lambda kv: -kv[1])[:5]
            rows.append({"text": text, "dense": result["dense_vecs"][i], "n_tokens": len(lexical),
                         "top_tokens": [(t, round(float(w), 4)) for t, w in top], "colbert": result["colbert_vecs"][i]})
        pairs = [(0, 1), (0, 2)]
        scores = rt.compute_score([(texts[a], texts[b]) for a, b in pairs])
    return {"artifact": artifact, "rows": rows, "pairs": pairs, "scores": scores, "outputs": result}
