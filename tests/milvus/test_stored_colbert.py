"""Stored ColBERT in Milvus: Milvus Lite keeps no struct-array field (so ColBERT is recomputed there), and
StoredColbertCollection says so instead of failing later. (The server path needs a Milvus 2.6.4+ server.)"""

from __future__ import annotations

import pytest

pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus, milvus-lite) is not installed")
pytest.importorskip("milvus_lite", reason="the milvus extra (pymilvus, milvus-lite) is not installed")

from m3rt.integrations.milvus.stored_colbert import StoredColbertCollection, supports_stored_colbert  # noqa: E402


def test_milvus_lite_has_no_struct_arrays(tmp_path, runtime):
    from pymilvus import MilvusClient

    client = MilvusClient(str(tmp_path / "lite.db"))
    try:
        assert supports_stored_colbert(client) is False  # the probe is made, read back and dropped
        assert client.list_collections() == []
        with pytest.raises(ValueError, match="needs a Milvus server 2.6.4 or later"):
            StoredColbertCollection.create(client, "docs", runtime)
        assert not client.has_collection("docs")
    finally:
        client.close()
