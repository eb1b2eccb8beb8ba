"""Hostile clients against a real `m3rt serve` on loopback, with small limits so that each probe is cheap:
every one ends in a 4xx/503 JSON error or a correct answer, /health keeps answering, memory stays bounded and
is given back. The issue's probes (issue 24), one test or more each."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serving import HealthWatch, cpu_seconds, metric, post, rss_mb, server  # noqa: E402

BUDGET = 16_000_000
LONG = "a long text about search engines, ranking and retrieval " * 60  # over 512 tokens


@pytest.fixture(scope="module")
def tight(tiny_artifact):
    with server(tiny_artifact, "--max-response-bytes", str(BUDGET), "--max-body-bytes", "1000000",
                "--max-header-bytes", "4096", "--timeout-headers", "1", "--timeout-body", "1",
                "--timeout-keep-alive", "1", "--timeout-send", "2", "--limit-concurrency", "40",
                "--max-queue-tokens", "20000") as (url, proc, log):
        yield url, proc, rss_mb(proc.pid)[0]


def raw(url: str, data: bytes, *, wait: float = 5.0, rcvbuf: int | None = None) -> bytes:
    """Send `data` on a fresh connection, then read until the server closes it (or `wait` s pass)."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, int(port)))
    s.settimeout(wait)
    if data:
        s.sendall(data)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    s.close()
    return out


def json_error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), response[:300]
    return int(head.split()[1]), json.loads(body)


def health_ms(url: str) -> float:
    t = time.perf_counter()
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    return (time.perf_counter() - t) * 1e3


# ------------------------------------------------------------------------ 1. one small request, a huge response
def test_a_response_over_the_budget_is_413_before_any_work(tight):
    url, proc, idle = tight
    before = metric(url, "m3rt_tokens_total")
    texts = [LONG] * 64
    for path, body in [("/encode", {"inputs": texts, "return_colbert_vecs": True}),
                       ("/encode", {"inputs": [LONG] * 32, "return_colbert_vecs": True, "return_dense": False}),
                       ("/encode", {"inputs": ["word " * 3000] * 4, "max_length": 8192, "return_colbert_vecs": True}),
                       ("/tokenize", {"inputs": ["word " * 700] * 256})]:
        r = post(url, path, body)
        assert r.status_code == 413, (path, r.text)
        assert r.json()["error_type"] == "Validation" and "--max-response-bytes" in r.json()["error"]
    assert "base64_fp16" in post(url, "/encode", {"inputs": texts, "return_colbert_vecs": True}).json()["error"]
    assert metric(url, "m3rt_tokens_total") == before  # refused before the engine ran
    assert rss_mb(proc.pid)[1] < 2 * idle + BUDGET / 2**20  # peak: far from the gigabytes of a float dump


def test_colbert_packed_as_base64_fp16_is_cheap_and_right(tight, runtime):
    url = tight[0]
    texts = [LONG] * 32  # as float JSON over the budget (the test above); packed, within it
    r = post(url, "/encode", {"inputs": texts, "return_dense": False, "return_colbert_vecs": True,
                              "colbert_format": "base64_fp16"})
    assert r.status_code == 200, r.text
    import base64

    want = runtime.encode(texts, return_dense=False, return_colbert_vecs=True)["colbert_vecs"]
    for got, ref in zip(r.json()["colbert_vecs"], want):
        np.testing.assert_allclose(np.frombuffer(base64.b64decode(got), "<f2").reshape(-1, 64), ref, atol=2e-3)


# ------------------------------------------------------------------------ 2. /tokenize: admitted, off the loop
def test_tokenize_is_admitted_and_refuses_lone_surrogates(tight):
    url = tight[0]
    r = httpx.post(f"{url}/tokenize", content=b'{"inputs": ["ok", "bad \\ud800 text"]}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid Unicode" in r.json()["error"] and "inputs" in r.json()["error"]
    for path, body in [("/embed", '{"inputs": "\\udfff"}'), ("/v1/embeddings", '{"input": "\\ud800"}'),
                       ("/rerank", '{"query": "\\ud800", "texts": ["a"]}'),
                       ("/score", '{"pairs": [["a", "\\ud800"]]}')]:
        r = httpx.post(f"{url}{path}", content=body.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422, (path, r.text)
    ok = post(url, "/tokenize", {"inputs": ["hello world"] * 100})
    assert ok.status_code == 200 and len(ok.json()) == 100


def test_health_answers_within_a_second_under_heavy_requests(tiny_artifact):
    with server(tiny_artifact, "--max-queue-tokens", "2000000") as (url, proc, _):
        heavy = [("/tokenize", {"inputs": ["word " * 1000] * 256}),
                 ("/encode", {"inputs": [LONG] * 384, "return_sparse": True}),
                 ("/score", {"pairs": [[LONG, LONG]] * 64}),
                 ("/rerank", {"query": "q", "texts": [LONG] * 256})]
        results = []
        threads = [threading.Thread(target=lambda p=p, b=b: results.append(post(url, p, b, timeout=120)))
                   for p, b in heavy]
        for t in threads:
            t.start()
        worst = 0.0
        while any(t.is_alive() for t in threads):
            worst = max(worst, health_ms(url))
            time.sleep(0.1)
        assert sorted(r.status_code for r in results) == [200] * 4, [r.text[:200] for r in results]
        assert worst < 1000, f"/health took {worst:.0f} ms"


# ------------------------------------------------------------------------ 3. /score and /rerank: the queue, leaving
def test_score_and_rerank_go_through_the_queue(tiny_artifact):
    with server(tiny_artifact, "--max-queue-tokens", "20000") as (url, _, _):
        codes = []
        pairs = [[LONG, LONG]] * 64  # 64 x 1024 tokens: past --max-queue-tokens while another request waits

        def client(path, body):
            r = post(url, path, body)
            codes.append((path, r.status_code, r.json()))

        bodies = [("/score", {"pairs": pairs}), ("/rerank", {"query": LONG, "texts": [LONG] * 128})] * 5
        threads = [threading.Thread(target=client, args=pb) for pb in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {c for _, c, _ in codes} <= {200, 429}, codes
        for path in ("/score", "/rerank"):
            refused = [b for p, c, b in codes if p == path and c == 429]
            assert refused and all(b["error_type"] == "Overloaded" for b in refused), (path, codes)


def test_an_abandoned_score_stops_computing(tiny_artifact):
    with server(tiny_artifact, "--max-queue-tokens", "2000000", "--max-response-bytes", str(1 << 30)) as (url, proc, _):
        pairs = [["word " * 200, "word " * 200]] * 1024  # quick to tokenize, about 15 s to encode here
        with pytest.raises(httpx.TimeoutException):
            post(url, "/score", {"pairs": pairs}, timeout=2)
        left = time.monotonic()
        while cpu_seconds(proc.pid, over=1.0) > 0.3:  # the server is still computing
            assert time.monotonic() - left < 8, "the abandoned request is still being computed"
        assert metric(url, "m3rt_batch_texts_sum") < 2 * len(pairs)
        assert metric(url, "m3rt_dropped_requests_total") == 1


# ------------------------------------------------------------------------ 4. connections
def test_headers_past_the_limit_are_431(tight):
    url = tight[0]
    status, body = json_error(raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"))
    assert status == 431 and "--max-header-bytes" in body["error"]
    t = time.monotonic()
    status, body = json_error(raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Many: y\r\n" * 1000))
    assert status == 431 and time.monotonic() - t < 2


def test_slow_headers_slow_bodies_and_idle_connections_are_closed(tight):
    url = tight[0]
    t = time.monotonic()
    status, body = json_error(raw(url, b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-"))
    assert status == 408 and "--timeout-headers" in body["error"] and time.monotonic() - t < 3
    t = time.monotonic()
    status, body = json_error(raw(url, b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                       b"Content-Length: 100\r\n\r\n{\"inputs\": "))
    assert status == 408 and "--timeout-body" in body["error"] and time.monotonic() - t < 3
    t = time.monotonic()
    assert raw(url, b"", wait=10) == b"" and time.monotonic() - t < 3  # an idle connection: closed
    t = time.monotonic()  # keep-alive after a request: closed too
    out = raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", wait=10)
    assert out.startswith(b"HTTP/1.1 200") and time.monotonic() - t < 3


# Holds 60 sockets open without sending a byte, reopening those the server closed every 0.2 s, for argv[3]
# seconds; prints how many it reopened. A process of its own: a client sharing the tests' GIL would delay the
# probes' requests by whole switch intervals.
IDLE_HOLDER = """
import selectors, socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sel, reopened = selectors.DefaultSelector(), 0
def open_one():
    s = socket.socket(); s.setblocking(False); s.connect_ex((host, port)); sel.register(s, selectors.EVENT_READ)
for _ in range(60):
    open_one()
end = time.monotonic() + seconds
while time.monotonic() < end:
    time.sleep(0.2)
    for key, _ in sel.select(0):
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj); key.fileobj.close(); open_one(); reopened += 1
print(reopened)
"""


def test_idle_connections_past_the_limit_make_room_and_health_stays_up(tight):
    """More sockets than --limit-concurrency (40) held without a byte sent, each reopened once closed: the idle
    ones are closed to make room, and /health answers 200 within a second throughout."""
    url = tight[0]
    host, port = url.removeprefix("http://").split(":")
    holder = subprocess.Popen([sys.executable, "-c", IDLE_HOLDER, host, port, "4"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.7)
        with HealthWatch(url, every=0.05) as health:
            holder.wait(timeout=30)
    finally:
        reopened = int(holder.communicate(timeout=30)[0] or 0)
    assert len(health.answers) >= 20 and health.healthy, health.answers
    assert reopened >= 20  # the idle sockets made the room


def test_requests_in_progress_past_the_limit_get_503_json_and_health_still_answers(tight):
    """Every one of the 40 connections has a request in the app: a new connection may still ask for /health (and
    is closed after its answer); anything else gets 503 JSON; past the few such probes at once, 503 at connect."""
    url = tight[0]
    host, port = url.removeprefix("http://").split(":")
    partial = (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
               b'{"inputs": ')  # a request in the app, its body not complete (--timeout-body 1)
    held = [socket.create_connection((host, int(port))) for _ in range(40)]
    probes = []
    try:
        for s in held:
            s.sendall(partial)
        time.sleep(0.2)
        for _ in range(3):  # keep-alive asked for: the probe connection is closed after its answer all the same
            t = time.perf_counter()
            answer = raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", wait=2)
            assert answer.startswith(b"HTTP/1.1 200") and time.perf_counter() - t < 1, answer[:300]
        for request in (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
                        b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"):
            status, body = json_error(raw(url, request, wait=2))
            assert status == 503 and "--limit-concurrency" in body["error"] and "/health" in body["error"]
        # Probe connections that send nothing take the few places; then a new connection is refused at once.
        probes = [socket.create_connection((host, int(port))) for _ in range(8)]
        time.sleep(0.2)
        status, body = json_error(raw(url, b"", wait=2))
        assert status == 503 and "--limit-concurrency" in body["error"]
    finally:
        for s in held + probes:
            s.close()
    time.sleep(0.3)
    assert health_ms(url) < 1000


def test_a_client_that_reads_nothing_is_cut_and_its_bytes_given_back(tight):
    url = tight[0]
    # About 10 MB of JSON: more than the socket buffers take while nobody reads.
    body = json.dumps({"inputs": [LONG] * 12, "return_colbert_vecs": True, "colbert_format": "float"}).encode()
    request = (b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)
    host, port = url.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    s.sendall(request)
    time.sleep(1)
    assert metric(url, "m3rt_held_bytes") > 0  # the response waits for a reader
    time.sleep(3)  # past --timeout-send 2
    assert metric(url, "m3rt_held_bytes") == 0
    s.close()


# ------------------------------------------------------------------------ 5. SIGTERM past the drain deadline
def test_sigterm_cuts_what_outlives_the_graceful_timeout_with_503_json(tiny_artifact):
    # Six big requests at once: many seconds of work on any machine, so some of it is still queued or running
    # when the one-second drain deadline passes, however fast the CPU.
    with server(tiny_artifact, "--graceful-timeout", "1", "--max-queue-tokens", "20000000") as (url, proc, _):
        results = [None] * 6

        def slow(i):
            results[i] = post(url, "/embed", {"inputs": [f"drain {i} " * 300] * 1024}, timeout=60)

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - signalled < 8
        cut = [r for r in results if r.status_code != 200]
        assert cut, "every request finished inside the drain deadline: nothing was cut"
        for r in cut:
            assert r.status_code == 503 and r.headers["content-type"] == "application/json", r.text[:200]
            assert "--graceful-timeout" in r.json()["error"]


# ------------------------------------------------------------------------ 6. memory given back
def test_memory_taken_by_a_big_request_is_given_back(tiny_artifact):
    with server(tiny_artifact, "--max-response-bytes", str(512 << 20)) as (url, proc, _):
        post(url, "/encode", {"inputs": ["warm up"] * 8, "return_colbert_vecs": True})
        idle = rss_mb(proc.pid)[0]
        r = post(url, "/encode", {"inputs": [LONG] * 128, "return_colbert_vecs": True, "return_sparse": True})
        assert r.status_code == 200 and len(r.content) > 50 << 20
        del r
        time.sleep(1.0)
        after, peak = rss_mb(proc.pid)
        assert peak - idle > 80  # it did take memory
        assert after - idle < 0.25 * (peak - idle) + 20, (idle, peak, after)


# ------------------------------------------------------------------------ 7. settings and fields
@pytest.mark.parametrize("flag, value, says", [("--workers", "0", "workers"), ("--port", "99999", "port"),
                                               ("--max-body-bytes", "-5", "max_body_bytes"),
                                               ("--max-queue-tokens", "0", "max_queue_tokens"),
                                               ("--graceful-timeout", "-1", "graceful_timeout"),
                                               ("--metrics-port", "0", "metrics_port")])
def test_bad_settings_stop_the_server_with_one_line(tiny_artifact, flag, value, says):
    done = subprocess.run([sys.executable, "-m", "m3rt.cli", "serve", str(tiny_artifact), flag, value],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr


def test_fields_are_honoured_or_refused(tight, runtime):
    url = tight[0]
    cases = [("/embed", {"inputs": "a", "dimensions": 65}, "dimensions=65"),
             ("/v1/embeddings", {"input": "a", "dimensions": 4096}, "dimensions=4096"),
             ("/embed", {"inputs": "a", "prompt_name": "nope"}, "prompt_name"),
             ("/embed", {"inputs": "a", "truncation_direction": "Left"}, "right truncation"),
             ("/encode", {"inputs": "a", "max_length": 0}, "max_length"),
             ("/score", {"pairs": [["a", "b"]], "max_query_length": 0}, "max_query_length"),
             ("/score", {"pairs": [["a", "b"]], "weights_for_different_modes": [0, 0, 1]}, "dense + sparse"),
             ("/score", {"pairs": [["a", "b"]], "weights_for_different_modes": [1, 1]}, "3 finite"),
             ("/score", {"pairs": [["a", "b"]], "weights_for_different_modes": [-1, 1, 1]}, "3 finite")]
    for path, body, says in cases:
        r = post(url, path, body)
        assert r.status_code == 422, (path, body, r.text)
        message = r.json()["error"]["message"] if path.startswith("/v1/") else r.json()["error"]
        assert says in message, (path, message)
    nan = httpx.post(f"{url}/score", content=b'{"pairs": [["a", "b"]], "weights_for_different_modes": [NaN, 1, 1]}',
                     headers={"content-type": "application/json"})
    assert nan.status_code == 422
    cut = post(url, "/embed", {"inputs": "hello", "dimensions": 16}).json()[0]
    want = runtime.encode(["hello"])["dense_vecs"][0][:16]
    np.testing.assert_allclose(cut, want / np.linalg.norm(want), atol=1e-6)
    same = [post(url, "/rerank", {"query": "a", "texts": ["a b", "c"], "raw_scores": flag}).json() for flag in (0, 1)]
    assert same[0] == same[1]  # MaxSim has no activation: raw and not raw are one score


def test_info_shows_no_machine_path(tight, tiny_artifact):
    url = tight[0]
    info = httpx.get(f"{url}/info").text
    assert "/" not in json.loads(info)["model_id"] and str(tiny_artifact) not in info and "/tmp" not in info
