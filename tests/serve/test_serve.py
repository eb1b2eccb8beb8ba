"""`m3rt serve` against a real uvicorn server on loopback, started by the tests: every route equals the
embedded runtime, concurrent clients share runtime calls, overload gives 429 and recovers, bad input is 4xx
JSON, SIGTERM drains and exits 0."""

from __future__ import annotations

import base64
import signal
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serving import metric, post, server  # noqa: E402

TEXTS = ["What is BGE M3?", "北京是中国的首都。", "a", "Definition of BM25: a ranking function " * 3]


@pytest.fixture(scope="module")
def live(tiny_artifact):
    with server(tiny_artifact, "--max-body-bytes", "200000", "--max-texts-per-request", "64",
                "--served-model-name", "m3") as (url, proc, _):
        yield url


def test_routes_equal_the_embedded_runtime(live, runtime):
    ref = runtime.encode(TEXTS, return_sparse=True, return_colbert_vecs=True)
    r = post(live, "/embed", {"inputs": TEXTS})
    assert r.status_code == 200
    np.testing.assert_allclose(r.json(), ref["dense_vecs"], atol=1e-6)
    sparse = post(live, "/embed_sparse", {"inputs": TEXTS}).json()
    for got, want in zip(sparse, ref["lexical_weights"]):
        assert [str(x["index"]) for x in got] == list(want)
        np.testing.assert_allclose([x["value"] for x in got], list(want.values()), atol=1e-6)
    enc = post(live, "/encode", {"inputs": TEXTS, "return_sparse": True, "return_colbert_vecs": True}).json()
    np.testing.assert_allclose(enc["dense_vecs"], ref["dense_vecs"], atol=1e-6)
    assert [list(d) for d in enc["lexical_weights"]] == [list(d) for d in ref["lexical_weights"]]
    for got, want in zip(enc["colbert_vecs"], ref["colbert_vecs"]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    b64 = post(live, "/encode", {"inputs": TEXTS[:1], "return_dense": False, "return_colbert_vecs": True,
                                 "colbert_format": "base64_fp16"}).json()["colbert_vecs"][0]
    vecs = np.frombuffer(base64.b64decode(b64), dtype="<f2").reshape(-1, 64)
    np.testing.assert_allclose(vecs, ref["colbert_vecs"][0], atol=2e-3)
    oa = post(live, "/v1/embeddings", {"input": TEXTS, "encoding_format": "base64", "model": "m3"}).json()
    got = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in oa["data"]]
    np.testing.assert_allclose(got, ref["dense_vecs"], atol=1e-6)
    assert oa["usage"]["prompt_tokens"] > 0 and oa["model"] == "m3" and [d["index"] for d in oa["data"]] == [0, 1, 2, 3]
    ranked = post(live, "/rerank", {"query": TEXTS[0], "texts": TEXTS, "return_text": True}).json()
    want = runtime.rerank(TEXTS[0], TEXTS)
    assert [x["index"] for x in ranked] == [i for i, _ in want]
    np.testing.assert_allclose([x["score"] for x in ranked], [s for _, s in want], atol=1e-5)
    assert ranked[0]["text"] == TEXTS[ranked[0]["index"]]
    score = post(live, "/score", {"pairs": [[TEXTS[0], TEXTS[3]]]}).json()
    want = runtime.compute_score([(TEXTS[0], TEXTS[3])])
    assert score.keys() == want.keys() and np.allclose([v[0] for v in score.values()], [v[0] for v in want.values()],
                                                       atol=1e-5)
    tokens = post(live, "/tokenize", {"inputs": "hello"}).json()[0]
    assert [t["id"] for t in tokens] == runtime.tokenizer.encode(["hello"], 512)[0].tolist()
    info = httpx.get(f"{live}/info").json()
    assert info["max_input_length"] == 8192 and info["backend"] == "onnxruntime-cpu"
    metrics = httpx.get(f"{live}/metrics").text
    assert 'm3rt_requests_total{route="/embed",status="200"}' in metrics and "m3rt_batch_texts_bucket" in metrics
    schema = httpx.get(f"{live}/openapi.json").json()
    assert {"/embed", "/embed_sparse", "/rerank", "/tokenize", "/health", "/info", "/v1/embeddings", "/encode",
            "/score", "/metrics"} <= set(schema["paths"])


def test_concurrent_clients_share_runtime_calls(live, runtime):
    texts = [f"client {i} asks about search engines and BM25 " * (1 + i % 5) for i in range(64)]
    ref = runtime.encode(texts)["dense_vecs"]
    results = [None] * 64

    def client(i):
        results[i] = post(live, "/embed", {"inputs": texts[i]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 64
    np.testing.assert_allclose([r.json()[0] for r in results], ref, atol=1e-5)
    metrics = httpx.get(f"{live}/metrics").text
    merged = [line for line in metrics.splitlines() if line.startswith("m3rt_batch_requests_bucket")]
    singles = next(float(x.split()[-1]) for x in merged if 'le="1.0"' in x)
    total = next(float(x.split()[-1]) for x in merged if 'le="+Inf"' in x)
    assert singles < total  # some runtime calls served several requests


@pytest.mark.parametrize("body, status, message", [
    ({"inputs": [1]}, 422, "inputs"),
    ({"inputs": None}, 422, "inputs"),
    ({"input": ["hello"]}, 422, "inputs"),  # a wrong field name
    ({"inputs": []}, 422, "empty"),
    ({"inputs": ["x"] * 65}, 413, "over the limit of 64"),
    ({"inputs": ["x " * 300_000]}, 413, "over the limit of 200000"),
    ({"inputs": "hi", "normalize": False}, 422, "unit vectors only"),
    ({"inputs": "word " * 600, "truncate": False}, 413, "longer than max_length=512"),
])
def test_bad_input_is_4xx_json(live, body, status, message):
    r = post(live, "/embed", body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"] and r.json()["error_type"]


def test_malformed_requests_and_unknown_routes(live):
    r = httpx.post(f"{live}/embed", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation"
    r = httpx.get(f"{live}/nowhere")
    assert r.status_code == 404 and r.json()["error_type"] == "NotFound"
    r = httpx.get(f"{live}/embed")
    assert r.status_code == 405 and "error" in r.json()
    r = post(live, "/encode", {"inputs": "a", "return_dense": False})
    assert r.status_code == 422 and "nothing to return" in r.json()["error"]
    r = post(live, "/encode", {"inputs": "a", "max_length": 9000})
    assert r.status_code == 422 and "max_length" in r.json()["error"]


def test_overload_gives_429_and_recovers(tiny_artifact):
    with server(tiny_artifact, "--max-queue-tokens", "3000", "--max-wait-ms", "50") as (url, _, _):
        codes, retry = [], []
        texts = ["overload " * 200] * 8

        def client():
            r = post(url, "/embed", {"inputs": texts})
            codes.append(r.status_code)
            if r.status_code == 429:
                retry.append(r.headers.get("retry-after"))
                assert r.json()["error_type"] == "Overloaded"

        threads = [threading.Thread(target=client) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 429 in codes and 200 in codes and set(codes) <= {200, 429}
        assert retry and all(r == "1" for r in retry)
        assert post(url, "/embed", {"inputs": "after the storm"}).status_code == 200


def test_sigterm_drains_in_flight_requests_and_exits_0(tiny_artifact):
    with server(tiny_artifact) as (url, proc, _):
        result = {}

        def slow():
            result["r"] = post(url, "/embed", {"inputs": ["drain me " * 400] * 64})

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        assert proc.wait(timeout=60) == 0
        assert result["r"].status_code == 200 and len(result["r"].json()) == 64


def test_a_client_that_leaves_drops_its_queued_work(tiny_artifact):
    with server(tiny_artifact, "--max-batch-texts", "64", "--max-queue-tokens", "1000000") as (url, _, _):
        busy = threading.Thread(target=post, args=(url, "/embed", {"inputs": ["keep the worker busy " * 300] * 1024}))
        busy.start()
        deadline = time.monotonic() + 30
        while metric(url, "m3rt_queue_tokens") == 0 and time.monotonic() < deadline:  # tokenized and queued
            time.sleep(0.05)
        with pytest.raises(httpx.TimeoutException):  # queued behind the busy call; the client gives up
            httpx.post(f"{url}/embed", json={"inputs": ["never encoded " * 300] * 64}, timeout=0.5)
        busy.join(60)
        time.sleep(0.5)
        metrics = httpx.get(f"{url}/metrics").text
        dropped = next(float(x.split()[-1]) for x in metrics.splitlines()
                       if x.startswith("m3rt_dropped_requests_total"))
        texts = next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("m3rt_batch_texts_sum"))
        assert dropped == 1 and texts == 1024  # only the busy request's texts were encoded


def test_chunked_body_over_the_limit_is_413(live):
    """No Content-Length to check first: the body is counted as it arrives and refused past the limit."""
    def chunks():
        piece = b'{"inputs": ["' + b"x" * 50_000
        yield piece
        for _ in range(10):
            yield b"y" * 50_000
        yield b'"]}'

    r = httpx.post(f"{live}/embed", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error_type"] == "Validation"
    assert "over the limit of 200000" in r.json()["error"]
    small = httpx.post(f"{live}/embed", content=iter([b'{"inputs": ', b'"hello"}']),
                       headers={"content-type": "application/json"}, timeout=60)
    assert small.status_code == 200 and len(small.json()) == 1
