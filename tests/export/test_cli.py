"""The CLI: encode from arguments, files and stdin; info; errors are one line without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from m3rt.cli import main


def run_cli(*args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "m3rt.cli", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_encode_arguments(tiny_artifact, runtime, capsys):
    assert main(["encode", str(tiny_artifact), "hello world", "北京", "--sparse", "--colbert", "--dense"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ref = runtime.encode(["hello world", "北京"], return_sparse=True, return_colbert_vecs=True)
    assert [r["index"] for r in rows] == [0, 1]
    for r, dense, lex, col in zip(rows, ref["dense_vecs"], ref["lexical_weights"], ref["colbert_vecs"]):
        assert r["dense_vecs"] == pytest.approx(dense.tolist(), abs=1e-7)
        assert list(r["lexical_weights"]) == list(lex)
        assert len(r["colbert_vecs"]) == len(col)


def test_encode_lines_file_and_jsonl_stdin(tiny_artifact, tmp_path, capsys):
    f = tmp_path / "texts.txt"
    f.write_text("first line\nsecond line\n\n")
    assert main(["encode", str(tiny_artifact), "--input", str(f)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {"index", "dense_vecs"}  # dense by default; empty line kept
    res = run_cli("encode", tiny_artifact, "--jsonl", "--sparse", stdin='{"text": "a"}\n"b"\n')
    assert res.returncode == 0, res.stderr
    assert [set(json.loads(line)) for line in res.stdout.splitlines()] == [{"index", "lexical_weights"}] * 2


@pytest.mark.parametrize("args, stdin, message", [
    (["encode", "{artifact}", "--jsonl"], "{bad\n", "<stdin>:1: not valid JSON"),
    (["encode", "{artifact}", "--jsonl"], '{"txt": 1}\n', "object with a string 'text' field"),
    (["encode", "{artifact}", "hi", "--max-length", "9000"], None, "above the model's limit"),
    (["encode", "{nowhere}", "hi"], None, "artifact directory not found"),
    (["info", "{nowhere}"], None, "artifact directory not found"),
    (["export", "{nowhere}", "--out", "{nowhere}"], None, "no such directory"),
])
def test_errors_are_one_line(tiny_artifact, tmp_path, args, stdin, message):
    args = [a.format(artifact=tiny_artifact, nowhere=tmp_path / "nowhere") for a in args]
    res = run_cli(*args, stdin=stdin)
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("m3rt: error")]
    assert len(errors) == 1 and message in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def test_info(tiny_artifact, capsys):
    assert main(["info", str(tiny_artifact)]) == 0
    out = capsys.readouterr().out
    assert "hidden 64" in out and "max_length    8192" in out and "sha256 verified" in out


def test_export_cli_and_tiny_model(tmp_path):
    res = run_cli("tiny-model", tmp_path / "m")
    assert res.returncode == 0, res.stderr
    res = run_cli("export", tmp_path / "m", "--out", tmp_path / "a")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "a" / "manifest.json").is_file()
    assert "validating" in res.stderr  # progress on the long steps


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "dense_vecs" in out and "lexical_weights" in out and "colbert_vecs" in out and "TEST model" in out


def test_export_int8_cli_and_info(tiny_model_dir, tmp_path, capsys):
    assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "a"), "--precision", "int8"]) == 0
    assert main(["info", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "precision     int8" in out and "int8 vs fp32   dense_min_cosine" in out


def test_build_engine_without_tensorrt_is_one_line(tiny_artifact):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: the GPU tests cover build-engine")
    res = run_cli("build-engine", tiny_artifact)
    assert res.returncode == 1 and "needs the `tensorrt` package" in res.stderr and "Traceback" not in res.stderr
