"""m3rt embed-corpus in-process: the output shard schema against the runtime, resumability by shard, settings
checks, bad inputs, and artifacts fetched over HTTP (a real http.server on loopback)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="embed-corpus writes Parquet: pyarrow is not installed")
import pyarrow.parquet as pq  # noqa: E402

from m3rt.corpus import embed_corpus  # noqa: E402
from m3rt.corpus.schema import colbert_rows  # noqa: E402

WORDS = "alpha beta gamma delta river stone 北京 首都 лиса собака music forest".split()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def make_rows(n: int, seed: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": start + i, "text": " ".join(rng.choice(WORDS, rng.integers(1, 30)))} for i in range(n)]


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", make_rows(40, 0))
    write_jsonl(d / "b.jsonl", make_rows(25, 1, start=100) + [{"id": 200, "text": ""}])
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(10)], "text": [r["text"] for r in make_rows(10, 2)]}),
                   d / "c.parquet")
    return d


def test_shards_hold_the_runtime_outputs(runtime, tiny_artifact, corpus_dir, tmp_path):
    done = embed_corpus(tiny_artifact, corpus_dir, out=tmp_path / "out", dense=True, sparse=True, colbert=True)
    assert done["shards_done"] == ["a.jsonl", "b.jsonl", "c.parquet"] and done["rows"] == 76
    for name, ids in (("a", list(range(40))), ("b", list(range(100, 125)) + [200]), ("c", [f"p{i}" for i in range(10)])):
        table = pq.read_table(tmp_path / "out" / f"{name}.parquet")
        assert table.column("id").to_pylist() == ids  # input order, every id once
        assert table.schema.field("dense").type == pa.list_(pa.float32())
        assert table.schema.field("sparse_token_ids").type == pa.list_(pa.int32())
        assert table.schema.field("colbert_vectors").type == pa.large_binary()
        src = corpus_dir / (f"{name}.jsonl" if name != "c" else "c.parquet")
        texts = ([json.loads(x)["text"] for x in src.read_text(encoding="utf-8").splitlines()] if name != "c"
                 else pq.read_table(src).column("text").to_pylist())
        want = runtime.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
        np.testing.assert_allclose(np.stack(table.column("dense").to_numpy(zero_copy_only=False)),
                                   want["dense_vecs"], atol=1e-6)
        for got_ids, got_w, lw in zip(table.column("sparse_token_ids").to_pylist(),
                                      table.column("sparse_weights").to_pylist(), want["lexical_weights"]):
            assert dict(zip(map(str, got_ids), got_w)) == pytest.approx({k: float(v) for k, v in lw.items()},
                                                                      abs=1e-6)
        for got, ref in zip(colbert_rows(table), want["colbert_vecs"]):
            assert got.dtype == np.float16 and got.shape == ref.shape
            np.testing.assert_allclose(got.astype(np.float32), ref, atol=2e-3)


def test_rerun_skips_finished_shards_and_redoes_the_interrupted_one(tiny_artifact, corpus_dir, tmp_path):
    out = tmp_path / "out"
    (corpus_dir / "b.jsonl").write_text((corpus_dir / "b.jsonl").read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"b.jsonl:27: not valid JSON"):
        embed_corpus(tiny_artifact, corpus_dir, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet"]  # whole, and nothing of the failed shard
    write_jsonl(corpus_dir / "b.jsonl", make_rows(25, 1, start=100))
    first = (out / "a.parquet").stat().st_mtime_ns
    done = embed_corpus(tiny_artifact, corpus_dir, out=out)
    assert done["shards_skipped"] == ["a.jsonl"] and done["shards_done"] == ["b.jsonl", "c.parquet"]
    assert (out / "a.parquet").stat().st_mtime_ns == first
    with pytest.raises(ValueError, match="written with other settings"):
        embed_corpus(tiny_artifact, corpus_dir, out=out, sparse=True)


def test_leftovers_of_a_killed_run_are_removed(tiny_artifact, corpus_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.parquet.tmp-12345").write_bytes(b"half a file")
    embed_corpus(tiny_artifact, corpus_dir / "a.jsonl", out=out)
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet"]


@pytest.mark.parametrize("rows, message", [
    ([{"text": "no id"}], r"x.jsonl:1: no 'id'"),
    ([{"id": 1, "text": 5}], r"x.jsonl:1: 'text' must be a string, got int"),
    ([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}], r"x.jsonl: id 1 appears twice"),
    ([{"id": [1], "text": "a"}], r"'id' must be an integer or a string, got list"),
    ([["id", "text"]], r"x.jsonl:1: expected an object"),
])
def test_bad_rows_are_named(tiny_artifact, tmp_path, rows, message):
    src = write_jsonl(tmp_path / "x.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        embed_corpus(tiny_artifact, src, out=tmp_path / "out")
    assert not (tmp_path / "out" / "x.parquet").exists()


def test_bad_input_paths(tiny_artifact, tmp_path):
    with pytest.raises(ValueError, match="no such file or folder"):
        embed_corpus(tiny_artifact, tmp_path / "missing", out=tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .jsonl or .parquet file"):
        embed_corpus(tiny_artifact, tmp_path / "empty", out=tmp_path / "out")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(ValueError, match="must be .jsonl or .parquet"):
        embed_corpus(tiny_artifact, tmp_path / "t.txt", out=tmp_path / "out")


def test_empty_shard_gets_an_empty_output(tiny_artifact, tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    embed_corpus(tiny_artifact, tmp_path / "e.jsonl", out=tmp_path / "out", colbert=True)
    table = pq.read_table(tmp_path / "out" / "e.parquet")
    assert table.num_rows == 0 and "colbert_vectors" in table.column_names


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www."""
    import functools
    import http.server

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_artifact_fetched_over_http_once_and_verified(tiny_artifact, http_root, tmp_path):
    import shutil

    from m3rt.artifact import fetch_artifact
    from m3rt.errors import ArtifactError

    root, url = http_root
    shutil.copytree(tiny_artifact, root / "art")
    got = fetch_artifact(f"{url}/art", cache=tmp_path / "cache")
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in Path(tiny_artifact).iterdir())
    assert fetch_artifact(f"{url}/art/", cache=tmp_path / "cache") == got  # fetched once
    from m3rt import M3Runtime

    with M3Runtime(got) as rt, M3Runtime(tiny_artifact) as ref:
        np.testing.assert_array_equal(rt.encode(["hello"])["dense_vecs"], ref.encode(["hello"])["dense_vecs"])
    graph = json.loads((root / "art" / "manifest.json").read_text())["graph"]
    (root / "art" / graph).write_bytes((root / "art" / graph).read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        fetch_artifact(f"{url}/art", cache=tmp_path / "other-cache")
    assert not any((tmp_path / "other-cache" / "fetched").iterdir())  # nothing half-fetched left behind
    with pytest.raises(ArtifactError, match="cannot be fetched"):
        fetch_artifact(f"{url}/nothing-here", cache=tmp_path / "cache")


def test_cli_embed_corpus(tiny_artifact, corpus_dir, tmp_path, capsys):
    from m3rt.cli import main

    assert main(["embed-corpus", str(tiny_artifact), str(corpus_dir), "--out", str(tmp_path / "out"),
                 "--sparse", "--colbert"]) == 0
    assert "76 rows in 3 shard(s)" in capsys.readouterr().err
    table = pq.read_table(tmp_path / "out" / "a.parquet")
    assert table.column_names == ["id", "sparse_token_ids", "sparse_weights", "colbert_count", "colbert_vectors"]
    assert main(["embed-corpus", str(tiny_artifact), str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_shard_pieces_read_back_to_the_whole_shard(tmp_path):
    """The pieces the Ray path reads on their own (index_chunks, read_chunk, coarsen) give read_rows' rows,
    with blank lines skipped and line numbers kept for errors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from m3rt.corpus.shards import coarsen, index_chunks, read_chunk, read_rows

    lines = [json.dumps({"id": i, "text": f"row {i} é"}) if i % 5 else "  \u3000" for i in range(23)]
    src = tmp_path / "s.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = [p for batch in read_rows(src, "id", "text") for p in batch]
    for rows in (1, 3, 64):
        chunks = index_chunks(src, rows)
        assert sum(c[-1] for c in chunks) == len(whole) == 18
        for pieces in (chunks, coarsen(chunks, 7)):
            assert [p for c in pieces for p in read_chunk(src, c, "id", "text")] == whole
    assert all(c[-1] <= 7 for c in coarsen(index_chunks(src, 3), 7))
    pq.write_table(pa.table({"id": list(range(10)), "text": [f"t{i}" for i in range(10)]}), tmp_path / "p.parquet",
                   row_group_size=4)
    groups = index_chunks(tmp_path / "p.parquet", 64)
    assert groups == [(0, 4), (1, 4), (2, 2)]
    assert [p for g in groups for p in read_chunk(tmp_path / "p.parquet", g, "id", "text")] == \
        [p for b in read_rows(tmp_path / "p.parquet", "id", "text") for p in b]


def test_invalid_utf8_in_a_shard_is_named_by_line(tmp_path):
    from m3rt.corpus.shards import index_chunks, read_chunk, read_rows

    src = tmp_path / "s.jsonl"
    src.write_bytes(b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "bad \xff"}\n')
    with pytest.raises(ValueError, match=r"s\.jsonl:2: not valid utf-8"):
        list(read_rows(src, "id", "text"))
    with pytest.raises(ValueError, match=r"s\.jsonl:2: not valid utf-8"):
        read_chunk(src, index_chunks(src, 64)[0], "id", "text")
