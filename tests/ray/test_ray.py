"""m3rt on a real local Ray cluster: a head and a second node started with `ray start` (two raylets, one CPU
each), torn down after. embed-corpus on Ray Data equals the in-process run; a worker killed mid-job leaves
every id exactly once; Ray Serve with two replicas answers concurrent clients with the embedded results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytest.importorskip("ray.data", reason="the ray extra (ray[data]) is not installed")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from m3rt.corpus import embed_corpus  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
WORDS = "alpha beta gamma delta river stone 北京 首都 лиса собака music forest".split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` and a second `ray start --address` on this machine: two raylets, one CPU each."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="m3rt-ray-"))
    # One auth mode for the head, the second node and this driver, whatever token an earlier Ray run on this
    # machine left in ~/.ray (a head that found one required it; the joining node did not send it).
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0", RAY_AUTH_MODE="disabled")
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    common = ["--num-cpus=1", "--disable-usage-stats"]
    head = [RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
            f"--temp-dir={tmp}", *common]
    worker = [RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common]
    try:
        for cmd in (head, worker):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.monotonic() < deadline, "the second raylet did not join"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def write_corpus(d: Path, shards: dict[str, int]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, n in shards.items():
        rng = np.random.default_rng(start)
        rows = [{"id": start + i, "text": " ".join(rng.choice(WORDS, rng.integers(1, 40)))} for i in range(n)]
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        start += n
    return d


def read_out(out: Path) -> dict:
    table = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("*.parquet"))])
    order = np.argsort(table.column("id").to_numpy())
    return {c: table.column(c).take(pa.array(order)).to_pylist() for c in table.column_names}


def test_ray_data_equals_in_process(cluster, tiny_artifact, tmp_path):
    """Three shards in one Dataset (one of them empty, one Parquet), routed back to their own outputs."""
    src = write_corpus(tmp_path / "in", {"s0": 120, "s1": 50, "s2": 0})
    pq.write_table(pa.table({"id": list(range(170, 200)), "text": [f"parquet row {k} {WORDS[k % 12]}" for k in
                                                                    range(30)]}), src / "s3.parquet")
    kw = dict(dense=True, sparse=True, colbert=True)
    local = embed_corpus(tiny_artifact, src, out=tmp_path / "local", **kw)
    on_ray = embed_corpus(tiny_artifact, src, out=tmp_path / "ray", ray_address=cluster, workers=2, **kw)
    names = ["s0.jsonl", "s1.jsonl", "s2.jsonl", "s3.parquet"]
    assert local["rows"] == on_ray["rows"] == 200 and on_ray["shards_done"] == names
    for name, rows in zip(names, (120, 50, 0, 30)):  # each row in its own shard's output
        out_ids = [sorted(pq.read_table(tmp_path / d / f"{name.split('.')[0]}.parquet").column("id").to_pylist())
                   for d in ("local", "ray")]
        assert out_ids[0] == out_ids[1] and len(out_ids[1]) == rows, name
    a, b = read_out(tmp_path / "local"), read_out(tmp_path / "ray")
    assert a["id"] == b["id"] == list(range(200))
    np.testing.assert_allclose(np.array(a["dense"]), np.array(b["dense"]), atol=1e-5)
    assert a["sparse_token_ids"] == b["sparse_token_ids"]
    for x, y in zip(a["sparse_weights"], b["sparse_weights"]):
        np.testing.assert_allclose(x, y, atol=1e-5)
    assert a["colbert_count"] == b["colbert_count"]
    for x, y in zip(a["colbert_vectors"], b["colbert_vectors"]):
        np.testing.assert_allclose(np.frombuffer(x, "<f2").astype(np.float32),
                                   np.frombuffer(y, "<f2").astype(np.float32), atol=2e-3)
    again = embed_corpus(tiny_artifact, src, out=tmp_path / "ray", ray_address=cluster, workers=2, **kw)
    assert again["shards_skipped"] == names and again["rows"] == 0


def test_embed_dataset_returns_the_embeddings_and_kept_columns(cluster, runtime, tiny_artifact):
    from m3rt.ray import embed_dataset

    items = [{"id": i, "text": " ".join(WORDS[: i + 1]), "lang": f"l{i % 3}"} for i in range(10)]
    ds = embed_dataset(ray.data.from_items(items), str(tiny_artifact), dense=True, keep_columns=("lang",), workers=1)
    rows = sorted(ds.take_all(), key=lambda r: r["id"])
    assert [r["lang"] for r in rows] == [it["lang"] for it in items]
    want = runtime.encode([it["text"] for it in items])["dense_vecs"]
    np.testing.assert_allclose(np.array([r["dense"] for r in rows]), want, atol=1e-5)


def test_a_bad_row_on_ray_is_named_by_file_and_line(cluster, tiny_artifact, tmp_path):
    """The reader's own message, not Ray's remote-traceback header; no partial output left."""
    src = write_corpus(tmp_path / "in", {"a": 20})
    (src / "b.jsonl").write_text('{"id": 100, "text": "x"}\n{"id": 101, "text": 5}\n')
    with pytest.raises(ValueError, match=r"b\.jsonl:2: 'text' must be a string, got int"):
        embed_corpus(tiny_artifact, src, out=tmp_path / "out", ray_address=cluster, workers=2)
    assert not (tmp_path / "out" / "b.parquet").exists()
    assert not list((tmp_path / "out").glob(".*.tmp-*"))


def _embedder_pids() -> list[int]:
    """The Embedder actors' worker processes, by the process title Ray gives them (ray::MapWorker(...))."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::MapWorker(MapBatches(Embedder))"):
            pids.append(int(proc.name))
    return pids


def test_worker_killed_mid_job_loses_and_repeats_nothing(cluster, tiny_artifact, tmp_path):
    src = write_corpus(tmp_path / "in", {"big": 3000})
    killed: list[int] = []

    def kill_one(shard: str, rows: int) -> None:  # from the driver, once the job is under way
        if not killed and rows > 0:
            pids = _embedder_pids()
            assert pids, "no Embedder actor alive"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    from m3rt.artifact import read_manifest
    from m3rt.corpus.ray_data import embed_shards
    from m3rt.corpus.schema import settings_for
    from m3rt.corpus.shards import input_shards
    from m3rt.runtime.outputs import Outputs

    out = tmp_path / "out"
    out.mkdir()
    outputs = Outputs(dense=True, sparse=True)
    rows = embed_shards(str(tiny_artifact), input_shards(src), out, ray_address=cluster, workers=2,
                        settings=settings_for(read_manifest(tiny_artifact), outputs),
                        outputs=outputs, batch_tokens=None, id_field="id", text_field="text",
                        backend="auto", progress=kill_one)
    assert killed and rows == 3000
    ids = pq.read_table(out / "big.parquet").column("id").to_pylist()
    assert sorted(ids) == list(range(3000))  # every id, once


def test_ray_serve_two_replicas_answer_like_the_embedded_runtime(cluster, runtime, tiny_artifact):
    import httpx
    from ray import serve

    from m3rt.ray import deploy

    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    port = free_port()
    deploy(str(tiny_artifact), ray_address=cluster, replicas=2, port=port, num_cpus=0.5)
    try:
        texts = [" ".join(WORDS[: k % len(WORDS) + 1]) for k in range(32)]
        want = runtime.encode(texts, return_sparse=True)

        def call(k: int):
            r = httpx.post(f"http://127.0.0.1:{port}/encode", timeout=120,
                           json={"inputs": [texts[k]], "return_dense": True, "return_sparse": True})
            assert r.status_code == 200, r.text
            return r.json()

        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(call, range(len(texts))))
        for k, body in enumerate(got):
            np.testing.assert_allclose(body["dense_vecs"][0], want["dense_vecs"][k], atol=1e-6)
            assert body["lexical_weights"][0] == pytest.approx({t: float(w) for t, w in
                                                                 want["lexical_weights"][k].items()}, abs=1e-6)
        status = serve.status().applications["m3rt"].deployments["m3rt"]
        assert status.replica_states.get("RUNNING") == 2
        bad = httpx.post(f"http://127.0.0.1:{port}/embed", json={"inputs": 5}, timeout=60)
        assert bad.status_code == 422 and "error" in bad.json()
    finally:
        serve.shutdown()
