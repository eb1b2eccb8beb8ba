"""truncate_dim cuts and re-normalises exactly as FlagEmbedding's BGEM3FlagModel does."""

from __future__ import annotations

import numpy as np
import pytest

from m3rt import M3Runtime


def test_truncate_dim_matches_flagembedding(tiny_model_dir, runtime):
    flag = pytest.importorskip("FlagEmbedding")
    texts = ["What is BGE M3?", "北京是中国的首都。", "a"]
    ref = flag.BGEM3FlagModel(str(tiny_model_dir), use_fp16=False, devices="cpu", truncate_dim=24).encode(
        texts, return_dense=True, return_colbert_vecs=True)
    got = M3Runtime(runtime.manifest.root, truncate_dim=24).encode(texts, return_colbert_vecs=True)
    np.testing.assert_allclose(got["dense_vecs"], ref["dense_vecs"], atol=1e-5)
    for a, b in zip(got["colbert_vecs"], ref["colbert_vecs"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
