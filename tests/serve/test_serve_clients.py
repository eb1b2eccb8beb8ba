"""The clients people already use, unmodified, against a real `m3rt serve` with an API key: openai,
huggingface_hub's InferenceClient on the server's base URL (TEI's / route), langchain-openai's
OpenAIEmbeddings. Answers equal the embedded runtime's; errors read as those clients show them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serving import server  # noqa: E402

KEY = "client-key"
TEXTS = ["What is BGE M3?", "北京是中国的首都。", "Definition of BM25: a ranking function " * 3]


@pytest.fixture(scope="module")
def url(tiny_artifact):
    with server(tiny_artifact, "--api-key", KEY, "--served-model-name", "bge-m3") as (url, _, _):
        yield url


def test_openai_client(url, runtime):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    got = client.embeddings.create(model="bge-m3", input=TEXTS)
    want = runtime.encode(TEXTS)["dense_vecs"]
    assert np.abs(np.array([d.embedding for d in got.data]) - want).max() == 0.0
    assert [m.id for m in client.models.list()] == ["bge-m3"]
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="text-embedding-3-small", input="a")
    assert "bge-m3" in str(e.value) and e.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.embeddings.create(model="bge-m3", input="a", dimensions=4096)
    assert "dimensions=4096" in str(e.value) and e.value.response.headers["x-request-id"]
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).embeddings.create(model="bge-m3", input="a")
    assert "API key" in str(e.value)


@pytest.fixture
def hub_online(monkeypatch):
    """The tests run with HF_HUB_OFFLINE=1 (no hub is reachable); the server on loopback is no hub."""
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    hub.utils.reset_sessions()
    yield hub
    monkeypatch.undo()
    hub.utils.reset_sessions()


def test_huggingface_hub_inference_client_on_the_base_url(url, runtime, hub_online):
    client = hub_online.InferenceClient(model=url, token=KEY)
    got = client.feature_extraction(TEXTS[0])
    np.testing.assert_allclose(got, runtime.encode(TEXTS[:1])["dense_vecs"], atol=1e-6)
    got = client.feature_extraction(TEXTS[1], truncate=True, truncation_direction="Right", normalize=True)
    np.testing.assert_allclose(got, runtime.encode(TEXTS[1:2])["dense_vecs"], atol=1e-6)
    import httpx

    invocations = httpx.post(f"{url}/invocations", json={"inputs": TEXTS}, headers={"Authorization": f"Bearer {KEY}"})
    np.testing.assert_allclose(invocations.json(), runtime.encode(TEXTS)["dense_vecs"], atol=1e-6)


def test_langchain_openai_embeddings(url, runtime):
    lc = pytest.importorskip("langchain_openai")
    embeddings = lc.OpenAIEmbeddings(model="bge-m3", base_url=f"{url}/v1", api_key=KEY,
                                     check_embedding_ctx_length=False, max_retries=0)
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), runtime.encode(TEXTS)["dense_vecs"], atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[0]), runtime.encode(TEXTS[:1])["dense_vecs"][0],
                               atol=1e-6)


def test_langchain_openai_defaults_get_a_clear_error_not_wrong_tokens(url, monkeypatch):
    """With its defaults, OpenAIEmbeddings sends tiktoken ids of each text. tiktoken's files are not reachable
    from the tests: a small byte-level encoding stands in (the ids are another tokenizer's either way)."""
    lc = pytest.importorskip("langchain_openai")
    tiktoken = pytest.importorskip("tiktoken")
    openai = pytest.importorskip("openai")
    bytes_only = tiktoken.Encoding("bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                                   special_tokens={})
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda *_: bytes_only)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda *_: bytes_only)
    embeddings = lc.OpenAIEmbeddings(model="bge-m3", base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as e:
        embeddings.embed_documents(TEXTS)
    assert "token ids" in str(e.value) and "check_embedding_ctx_length=False" in str(e.value)
