"""What hostile bodies and texts cost a real `m3rt serve` on loopback: a small body of a million wrong items, texts
the tokenizer reads to its window cap, a request over the byte budget with its own body, SIGTERM while
tokenizing, a port in use. Each one ends in a 4xx/503 JSON error or a correct answer, within the memory bound
(2 x idle + --max-response-bytes), with /health answering within a second."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from serving import HealthWatch, post, reset_peak, rss_mb, server  # noqa: E402

BUDGET = 16_000_000
# A text the tokenizer reads to its window cap at the model's max_length (8192 tokens: 64 characters each): a
# family emoji (7 code points, a few tokens) repeated, about 1.9 MB.
CAPPED = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466" * (8192 * 64 // 7 + 1)


@pytest.fixture(scope="module")
def tight(tiny_artifact):
    with server(tiny_artifact, "--max-response-bytes", str(BUDGET), "--max-body-bytes", "1000000") as (url, proc, _):
        yield url, proc, rss_mb(proc.pid)[0]


def raw_post(url: str, path: str, body: bytes, **kw) -> httpx.Response:
    kw.setdefault("timeout", 60)
    return httpx.post(f"{url}{path}", content=body, headers={"content-type": "application/json"}, **kw)


def message(r: httpx.Response) -> str:
    error = r.json()["error"]
    return error["message"] if isinstance(error, dict) else error


# ------------------------------------------------------------------------ F1: wrong items, many values
def many(item: str, n: int) -> str:
    return "[" + ",".join([item] * n) + "]"


@pytest.mark.parametrize("path, body", [
    ("/embed", '{"inputs": ' + many("1", 450_000) + "}"),
    ("/score", '{"pairs": ' + many("[1]", 240_000) + "}"),
    ("/v1/embeddings", '{"input": ' + many("[1]", 240_000) + "}"),
    ("/rerank", '{"query": "q", "texts": ' + many("{}", 300_000) + "}"),
    ("/embed", '{"inputs": "a", ' + ", ".join(f'"k{i}": 1' for i in range(70_000)) + "}"),
])
def test_a_small_body_of_many_wrong_values_is_one_cheap_error(tight, path, body):
    url, proc, idle = tight
    reset_peak(proc.pid)
    with HealthWatch(url) as health:
        t = time.perf_counter()
        r = raw_post(url, path, body.encode())
        seconds = time.perf_counter() - t
        time.sleep(0.3)
    assert r.status_code in (413, 422) and len(r.content) < 1000, r.text[:300]
    assert seconds < 1 and health.healthy, (seconds, health.answers)
    assert rss_mb(proc.pid)[1] < 2 * idle + BUDGET / 2**20  # pydantic's one error per item took gigabytes


def test_lists_are_counted_and_their_first_wrong_item_named_before_each_item_is_validated(tight):
    url = tight[0]
    cases = [("/embed", {"inputs": ["a"] * 2000}, 413, "inputs: 2000 texts, over the limit of 1024"),
             ("/embed", {"inputs": ["a"] * 1000 + [1, None]}, 422, "inputs[1000]: expected a string, got a number"),
             ("/rerank", {"query": "q", "texts": ["a", {}]}, 422, "texts[1]: expected a string, got an object"),
             ("/score", {"pairs": [["a", "b"]] * 1100}, 413, "pairs: 1100 texts, over the limit of 1024"),
             ("/score", {"pairs": [["a", "b"], ["a"]]}, 422, "pairs[1]: expected [query, passage]"),
             ("/score", {"pairs": [["a", "b"]], "weights_for_different_modes": [1.0] * 500}, 422, "got 500 values"),
             ("/v1/embeddings", {"input": ["a"] * 1500}, 413, "input: 1500 texts"),
             ("/v1/embeddings", {"input": ["a", [1, 2]]}, 422, "token ids are not accepted"),
             ("/embed", {"inputs": "a", **{f"x{i}": 1 for i in range(3000)}}, 422, "x0: unknown field")]
    for path, body, status, says in cases:
        r = post(url, path, body)
        assert r.status_code == status and says in message(r), (path, r.status_code, r.text[:300])


def test_a_body_of_texts_is_still_parsed_and_answered(tight, runtime):
    url = tight[0]
    texts = ['a "quoted", [bracketed] {braced} text \\ with escapes' * 20] * 200  # over 64 KiB: parsed off the loop
    r = post(url, "/embed", {"inputs": texts})
    assert r.status_code == 200 and len(r.json()) == 200
    assert r.json()[0] == pytest.approx(runtime.encode(texts[:1])["dense_vecs"][0].tolist(), abs=1e-6)
    bad = raw_post(url, "/embed", b'{"inputs": ["' + b"a" * 100_000 + b'", ]}')
    assert bad.status_code == 422 and "JSON" in message(bad)


# ------------------------------------------------------------------------ F7: 413 when the body alone tips it
def test_a_request_over_the_budget_with_its_own_body_is_413_not_429(tight, runtime):
    url = tight[0]
    text = "a " * 7990
    tokens = int(runtime.tokenize([text], max_length=8192).lengths[0])
    per_text = tokens * 64  # /tokenize's estimate: 56 bytes of JSON and 8 of ids per token
    n = BUDGET // per_text  # the answer alone fits the budget ...
    body = json.dumps({"inputs": [text] * n}).encode()
    assert n * per_text <= BUDGET < n * per_text + 2 * len(body)  # ... not with the body held twice
    for _ in range(2):
        r = raw_post(url, "/tokenize", body)
        assert r.status_code == 413 and "Retry-After" not in r.headers, (r.status_code, r.text[:300])
        assert "--max-response-bytes" in message(r)


# ------------------------------------------------------------------------ F2: texts read to the window cap
def test_texts_read_to_the_window_cap_are_tokenized_one_at_a_time_within_the_memory_bound(tiny_artifact):
    with server(tiny_artifact) as (url, proc, _):  # defaults: --max-response-bytes 256 MiB
        idle = rss_mb(proc.pid)[0]
        reset_peak(proc.pid)
        results = []

        def client(n):
            results.append(post(url, "/tokenize", {"inputs": [CAPPED] * n}, timeout=120))

        with HealthWatch(url) as health:
            threads = [threading.Thread(target=client, args=(n,)) for n in (4, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert [r.status_code for r in results] == [200, 200], [r.text[:200] for r in results]
        assert health.healthy, health.answers
        peak = rss_mb(proc.pid)[1]
        assert peak < 2 * idle + 256, (idle, peak)  # six texts tokenized together took twice that


# ------------------------------------------------------------------------ F9: SIGTERM while tokenizing
def test_sigterm_while_tokenizing_answers_503_within_the_graceful_timeout(tiny_artifact):
    with server(tiny_artifact, "--graceful-timeout", "1") as (url, proc, _):
        body = json.dumps({"inputs": [CAPPED] * 4}, ensure_ascii=False).encode()
        answered = []

        def client():
            r = raw_post(url, "/tokenize", body)
            answered.append((r, time.monotonic()))

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.5)  # every request is tokenizing or waiting to
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        assert proc.wait(timeout=30) == 0
        exited = time.monotonic() - signalled
        for r, at in answered:
            assert r.status_code == 503 and "--graceful-timeout" in message(r), r.text[:200]
            assert at - signalled < 1 + 1, at - signalled  # the deadline, and a poll
        assert len(answered) == 3 and exited < 1 + 2.5, exited  # no tokenizer call holds the process open


# ------------------------------------------------------------------------ a port in use
def test_a_port_in_use_or_a_bad_host_is_one_error_line(tight, tiny_artifact):
    port = tight[0].rsplit(":", 1)[1]
    for args, says in [(["--port", port], f"cannot listen on 127.0.0.1:{port}"),
                       (["--host", "999.1.1.1"], "cannot listen on 999.1.1.1")]:
        t = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "m3rt.cli", "serve", str(tiny_artifact), *args],
                              capture_output=True, text=True, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("m3rt: error:"), done.stderr
        assert says in lines[0] and time.monotonic() - t < 20
