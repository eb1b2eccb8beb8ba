"""The checked-in golden outputs are still what FlagEmbedding computes on the tiny model."""

from __future__ import annotations

import numpy as np

from golden import GOLDEN_TEXTS, check_against_golden, load_golden


def test_golden_outputs_are_still_flagembeddings(flag_model, runtime):
    """The recordings against FlagEmbedding on a freshly built tiny model, and against a fresh export."""
    ref = flag_model.encode(GOLDEN_TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    golden = load_golden()
    check_against_golden({"dense_vecs": np.asarray(ref["dense_vecs"]), "lexical_weights": ref["lexical_weights"],
                          "colbert_vecs": ref["colbert_vecs"]}, golden)
    check_against_golden(runtime.encode(GOLDEN_TEXTS, return_sparse=True, return_colbert_vecs=True), golden)
