"""Golden outputs: the checked-in tiny artifact through the slim runtime against FlagEmbedding's outputs
recorded once (runtime tier: numpy, onnxruntime and tokenizers only); tests/parity/test_golden_parity.py checks
those recordings against FlagEmbedding and a fresh export today."""

from __future__ import annotations

from golden import GOLDEN_ARTIFACT, GOLDEN_TEXTS, check_against_golden, load_golden


def test_checked_in_artifact_gives_the_golden_outputs():
    from m3rt import M3Runtime

    with M3Runtime(GOLDEN_ARTIFACT) as rt:
        out = rt.encode(GOLDEN_TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    check_against_golden(out, load_golden())


