"""Golden outputs: the checked-in tiny artifact through the slim runtime against FlagEmbedding's outputs
recorded once (runtime tier: numpy, onnxruntime and tokenizers only); and, in the parity tier, those
recordings against FlagEmbedding and a fresh export today."""

from __future__ import annotations

import numpy as np

from golden import GOLDEN_ARTIFACT, GOLDEN_TEXTS, load_golden

# fp32 through onnxruntime against PyTorch: ~1e-7 on one machine; other CPU classes sum in other orders.
TOL = 1e-5


def check_against_golden(out: dict, golden: dict) -> None:
    np.testing.assert_allclose(out["dense_vecs"], golden["dense"], atol=TOL)
    indptr = golden["sparse_indptr"]
    for i, weights in enumerate(out["lexical_weights"]):
        ids = golden["sparse_ids"][indptr[i]:indptr[i + 1]]
        assert [int(k) for k in weights] == ids.tolist(), f"text {i}: tokens or their order differ"
        np.testing.assert_allclose(list(weights.values()), golden["sparse_weights"][indptr[i]:indptr[i + 1]], atol=TOL)
    offsets = golden["colbert_offsets"]
    for i, vecs in enumerate(out["colbert_vecs"]):
        np.testing.assert_allclose(vecs, golden["colbert"][offsets[i]:offsets[i + 1]], atol=TOL)


def test_checked_in_artifact_gives_the_golden_outputs():
    from m3rt import M3Runtime

    with M3Runtime(GOLDEN_ARTIFACT) as rt:
        out = rt.encode(GOLDEN_TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    check_against_golden(out, load_golden())


def test_golden_outputs_are_still_flagembeddings(flag_model, runtime):
    """The recordings against FlagEmbedding on a freshly built tiny model, and against a fresh export."""
    ref = flag_model.encode(GOLDEN_TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    golden = load_golden()
    check_against_golden({"dense_vecs": np.asarray(ref["dense_vecs"]), "lexical_weights": ref["lexical_weights"],
                          "colbert_vecs": ref["colbert_vecs"]}, golden)
    check_against_golden(runtime.encode(GOLDEN_TEXTS, return_sparse=True, return_colbert_vecs=True), golden)
