"""`m3rt encode` on real corpora: streams (memory flat in the input's size), carries ids, keeps what it wrote
when interrupted and resumes, cleans its input (BOM, CRLF, encodings), writes jsonl, npy and parquet; and the
CLI's manners (version, quiet, exact option names, help everywhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from forking import default_sigint
from m3rt.cli import build_parser, main

WORDS = "search ranking the renard collection 北京 BM25 engine query document Быстрая".split()


def cli(*args, stdin: bytes | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "m3rt.cli", *map(str, args)], input=stdin, capture_output=True,
                          timeout=timeout)


def rows_of(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(1, 12, n)]


def test_bom_and_crlf_read_as_clean_text(tiny_artifact, runtime, tmp_path):
    texts = ["first line", "second line", "北京"]
    f = tmp_path / "in.txt"
    f.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(texts).encode() + b"\r\n")
    ref = runtime.encode(texts)["dense_vecs"]
    assert main(["encode", str(tiny_artifact), "--input", str(f), "--output", str(tmp_path / "a.jsonl")]) == 0
    res = cli("encode", tiny_artifact, stdin="\r\n".join(texts).encode() + b"\r\n")
    assert res.returncode == 0, res.stderr
    for rows in (rows_of(tmp_path / "a.jsonl"), [json.loads(x) for x in res.stdout.decode().splitlines()]):
        np.testing.assert_allclose([r["dense_vecs"] for r in rows], ref, atol=1e-7)


def test_encodings_and_decoding_errors_name_file_and_line(tiny_artifact, runtime, tmp_path, capsys):
    f = tmp_path / "latin.txt"
    f.write_bytes("caf\xe9\nna\xefve\n".encode("latin-1"))
    assert main(["encode", str(tiny_artifact), "--input", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:1: not valid utf-8" in err and "--encoding" in err
    assert main(["encode", str(tiny_artifact), "--input", str(f), "--encoding", "latin-1"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose([r["dense_vecs"] for r in rows], runtime.encode(["café", "naïve"])["dense_vecs"],
                               atol=1e-7)


def test_ids_are_carried_from_jsonl_and_json_arrays(tiny_artifact, tmp_path, capsys):
    f = tmp_path / "docs.jsonl"
    f.write_text('{"id": "doc-7", "text": "hello"}\n{"key": 3, "text": "world"}\n"plain string"\n')
    assert main(["encode", str(tiny_artifact), "--input", str(f)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["index"], r.get("id")) for r in rows] == [(0, "doc-7"), (1, None), (2, None)]
    assert main(["encode", str(tiny_artifact), "--input", str(f), "--id-field", "key"]) == 0
    assert [json.loads(x).get("id") for x in capsys.readouterr().out.splitlines()] == [None, 3, None]
    g = tmp_path / "docs.json"
    g.write_text(json.dumps([{"id": 11, "text": "a"}, "b"]))
    assert main(["encode", str(tiny_artifact), "--input", str(g), "--sparse", "--sparse-tokens"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r.get("id") for r in rows] == [11, None]
    assert set(rows[0]) == {"index", "id", "lexical_weights", "lexical_tokens"}


def test_empty_input_says_so(tiny_artifact, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    res = cli("encode", tiny_artifact, "--input", tmp_path / "empty.txt")
    assert res.returncode == 0 and res.stdout == b""
    assert b"no texts in the input" in res.stderr


def test_unwritable_output_fails_before_any_work(tiny_artifact, tmp_path, capsys):
    t = time.perf_counter()
    assert main(["encode", str(tiny_artifact), "hi", "--output", str(tmp_path / "no" / "such" / "x.jsonl")]) == 1
    assert "cannot be written (No such file or directory)" in capsys.readouterr().err
    assert main(["encode", str(tmp_path / "no-artifact"), "hi", "--output", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err  # named before the artifact is even looked at
    assert time.perf_counter() - t < 5


def test_precision_digits_npy_and_parquet(tiny_artifact, runtime, tmp_path, capsys):
    texts = corpus(30)
    ref = runtime.encode(texts, return_sparse=True, return_colbert_vecs=True)
    f = tmp_path / "in.txt"
    f.write_text("\n".join(texts) + "\n")
    assert main(["encode", str(tiny_artifact), "--input", str(f), "--precision-digits", "3", "--chunk-size", "7"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["index"] for r in rows] == list(range(30))
    np.testing.assert_allclose([r["dense_vecs"] for r in rows], ref["dense_vecs"], rtol=6e-3, atol=1e-6)
    assert max(len(str(v).replace("-", "").replace("0.", "").lstrip("0")) for v in rows[0]["dense_vecs"]) <= 8
    assert main(["encode", str(tiny_artifact), "--input", str(f), "--format", "npy", "--chunk-size", "8",
                 "--output", str(tmp_path / "d.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), ref["dense_vecs"], atol=1e-6)
    pq = pytest.importorskip("pyarrow.parquet")
    assert main(["encode", str(tiny_artifact), "--input", str(f), "--format", "parquet", "--sparse", "--colbert",
                 "--chunk-size", "8", "--output", str(tmp_path / "d.parquet")]) == 0
    from m3rt.corpus.schema import colbert_rows

    arrow = pq.read_table(tmp_path / "d.parquet")
    table = arrow.to_pydict()
    assert table["id"] == list(range(30))  # no ids in the input: the row's index
    vectors = colbert_rows(arrow)
    for i in (0, 17, 29):
        assert [str(t) for t in table["sparse_token_ids"][i]] == list(ref["lexical_weights"][i])
        np.testing.assert_allclose(table["sparse_weights"][i], list(ref["lexical_weights"][i].values()), atol=1e-6)
        np.testing.assert_array_equal(vectors[i], ref["colbert_vecs"][i])  # float32, exact
    assert main(["encode", str(tiny_artifact), "hi", "--format", "npy", "--sparse", "--output",
                 str(tmp_path / "x.npy")]) == 1
    assert "npy holds dense vectors only" in capsys.readouterr().err


def test_interrupted_encode_keeps_its_rows_and_resume_finishes(tiny_artifact, runtime, tmp_path):
    texts = corpus(6000, seed=1)
    f = tmp_path / "big.txt"
    f.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "m3rt.cli", "encode", str(tiny_artifact), "--input", str(f),
                             "--output", str(out), "--chunk-size", "200"], stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while (not out.exists() or out.stat().st_size < 50_000) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    done = rows_of(out)  # every row written is complete JSON
    assert 0 < len(done) < 6000 and [r["index"] for r in done] == list(range(len(done)))
    with open(out, "a") as fh:
        fh.write('{"index": 99999, "dense_ve')  # a torn last line, as a crash mid-write leaves
    res = cli("encode", tiny_artifact, "--input", f, "--output", out, "--resume", "--chunk-size", "500")
    assert res.returncode == 0, res.stderr
    assert f"resumed after {len(done)}".encode() in res.stderr
    rows = rows_of(out)
    assert [r["index"] for r in rows] == list(range(6000))
    sample = [0, len(done) - 1, len(done), 5999]
    np.testing.assert_allclose([rows[i]["dense_vecs"] for i in sample],
                               runtime.encode([texts[i] for i in sample])["dense_vecs"], atol=1e-5)


def _peak_rss_mb(args) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "m3rt.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
    return usage.ru_maxrss / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's")
def test_memory_is_flat_in_the_input_size(tiny_artifact, tmp_path):
    peaks = {}
    for n in (2_000, 20_000):
        f = tmp_path / f"in-{n}.txt"
        f.write_text("\n".join(corpus(n, seed=n)) + "\n")
        peaks[n] = _peak_rss_mb(["encode", tiny_artifact, "--input", f, "--output", tmp_path / f"out-{n}.jsonl",
                                 "--sparse", "--colbert"])
    assert peaks[20_000] <= 1.3 * peaks[2_000], peaks


def test_cli_manners(tiny_artifact, capsys):
    from m3rt import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"m3rt {__version__}"
    with pytest.raises(SystemExit):
        main(["encode", str(tiny_artifact), "hi", "--dens"])  # no prefix matching
    err = capsys.readouterr().err
    assert "usage: m3rt encode" in err and "unrecognized arguments: --dens" in err
    # Every option of every subcommand says what it does.
    sub = build_parser()._subparsers._group_actions[0]
    for name, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help, f"m3rt {name} {action.option_strings or action.dest} has no help"
    res = cli("encode", tiny_artifact, "hello")
    assert b"skipped" not in res.stderr  # the backend skip lines are debug lines
    res = cli("-v", "encode", tiny_artifact, "hello")
    assert b"backend auto: skipped tensorrt" in res.stderr
    res = cli("encode", tiny_artifact, "hello", "-q")
    assert res.returncode == 0 and res.stderr == b""


def test_cut_texts_are_reported_once(tiny_artifact, tmp_path):
    f = tmp_path / "long.txt"
    f.write_text("\n".join(["word " * 600] * 3 + ["short"] * 5) + "\n")
    res = cli("encode", tiny_artifact, "--input", f, "--chunk-size", "2")
    assert res.returncode == 0
    lines = [x for x in res.stderr.decode().splitlines() if "were cut" in x]
    assert lines == ["m3rt: 3 of 8 texts were cut to max_length=512 tokens"]
