"""Access and operations on a real `m3rt serve`: the API key (from the environment here), CORS, request ids,
JSON logs, the served model name, metrics on their own port, prompts, and /health proving the engine answers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serving import free_port, post, server  # noqa: E402

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def secured(tiny_artifact):
    metrics_port = free_port()
    with server(tiny_artifact, "--cors-allow-origin", ORIGIN, "--json-logs", "--metrics-port", str(metrics_port),
                "--served-model-name", "bge-m3", "--default-prompt", "query: ", "--prompts", '{"doc": "passage: "}',
                env={"M3RT_API_KEY": KEY}) as (url, proc, log):
        yield url, metrics_port, log


def test_the_api_key_guards_every_route_but_health(secured):
    url = secured[0]
    assert httpx.get(f"{url}/health").status_code == 200
    for method, path in [("POST", "/embed"), ("GET", "/info"), ("GET", "/docs"), ("GET", "/openapi.json"),
                         ("POST", "/"), ("GET", "/v1/models")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            r = httpx.request(method, f"{url}{path}", json={"inputs": "a"}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, r.text)
            error = r.json()["error"]
            assert (error["code"] == "invalid_api_key") if path.startswith("/v1") else r.json()["error_type"]
    assert post(url, "/embed", {"inputs": "a"}, headers=AUTH).status_code == 200
    assert httpx.get(f"{url}/docs", headers=AUTH).status_code == 200


def test_cors_preflights_and_answers(secured):
    url = secured[0]
    asks = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"}
    r = httpx.options(f"{url}/embed", headers=asks)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    r = httpx.options(f"{url}/embed", headers={**asks, "Origin": "https://evil.example"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json" and "CORS" in r.json()["error"]
    r = post(url, "/embed", {"inputs": "a"}, headers={**AUTH, "Origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN and "x-request-id" in \
        r.headers["access-control-expose-headers"].lower()


def test_request_ids_are_echoed_or_made_and_logged_as_json(secured):
    url, _, log = secured
    r = post(url, "/embed", {"inputs": "a"}, headers={**AUTH, "X-Request-Id": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    made = post(url, "/embed", {"inputs": "a"}, headers=AUTH).headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    odd = post(url, "/embed", {"inputs": "a"}, headers={**AUTH, "X-Request-Id": "x" * 500}).headers["x-request-id"]
    assert odd != "x" * 500
    refused = post(url, "/embed", {"inputs": []}, headers={**AUTH, "X-Request-Id": "trace-43"})
    assert refused.status_code == 422 and refused.headers["x-request-id"] == "trace-43"
    time.sleep(0.2)
    lines = [json.loads(x) for x in open(log) if x.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    access = {x.get("request_id"): x for x in lines if x["logger"] == "m3rt.serve.access"}
    assert access["trace-42"]["status"] == 200 and access["trace-42"]["path"] == "/embed"
    assert access[made]["method"] == "POST" and access["trace-43"]["status"] == 422
    assert KEY not in open(log).read()


def test_served_model_name_is_checked_and_listed(secured):
    url = secured[0]
    models = httpx.get(f"{url}/v1/models", headers=AUTH).json()
    assert [m["id"] for m in models["data"]] == ["bge-m3"] and models["object"] == "list"
    r = post(url, "/v1/embeddings", {"input": "a", "model": "text-embedding-3-small"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found" and "bge-m3" in \
        r.json()["error"]["message"]
    ok = post(url, "/v1/embeddings", {"input": "a", "model": "bge-m3"}, headers=AUTH).json()
    assert ok["model"] == "bge-m3"
    assert httpx.get(f"{url}/v1/models/bge-m3", headers=AUTH).json()["id"] == "bge-m3"
    assert httpx.get(f"{url}/v1/models/other", headers=AUTH).status_code == 404


def test_metrics_on_their_own_port(secured):
    url, metrics_port, _ = secured
    assert httpx.get(f"{url}/metrics", headers=AUTH).status_code == 404
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert "m3rt_requests_total" in text and "m3rt_queue_tokens" in text and "m3rt_held_bytes" in text


def test_prompts_and_the_default_query_prompt(secured, runtime):
    url = secured[0]
    texts = ["what is bm25", "ranking"]
    for name, prefix in (("query", "query: "), ("doc", "passage: ")):
        got = post(url, "/embed", {"inputs": texts, "prompt_name": name}, headers=AUTH).json()
        np.testing.assert_allclose(got, runtime.encode([prefix + t for t in texts])["dense_vecs"], atol=1e-6)
    plain = post(url, "/embed", {"inputs": texts}, headers=AUTH).json()
    np.testing.assert_allclose(plain, runtime.encode(texts)["dense_vecs"], atol=1e-6)
    ranked = post(url, "/rerank", {"query": "bm25", "texts": texts}, headers=AUTH).json()
    want = runtime.rerank("query: bm25", texts)
    np.testing.assert_allclose([x["score"] for x in ranked], [s for _, s in want], atol=1e-5)
    info = httpx.get(f"{url}/info", headers=AUTH).json()
    assert info["prompts"] == ["doc", "query"] and info["auth"] is True and KEY not in json.dumps(info)


def test_health_proves_the_engine_answers(artifact_copy):
    with server(artifact_copy) as (url, proc, _):
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        graph = artifact_copy / "model.onnx"
        with open(graph, "ab") as f:  # the artifact changes under the server: its engine calls now fail
            f.write(b"\0")
        time.sleep(5.5)  # past the last call's freshness: /health probes the engine
        r = httpx.get(f"{url}/health", timeout=5)
        assert r.status_code == 503 and r.json()["error_type"] == "Unhealthy" and "changed on disk" in r.json()["error"]
