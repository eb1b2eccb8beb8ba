"""`m3rt bench` on the tiny preset: the files, the rows, exact-length inputs and clear argument errors.

Speed figures are never asserted: the tiny model times nothing meaningful, and CI machines are shared.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from m3rt.bench import run_bench
from m3rt.cli import main

BACKENDS = ["pytorch", "flagembedding", "m3rt-fp32", "m3rt-int8"]
SMALL = dict(batch_sizes=(1, 2), seq_lengths=(16, 32), sweep_lengths=(8, 16), corpus_size=12,
             corpus_min_tokens=4, corpus_max_tokens=48, corpus_batch_size=4, reps=2)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    pytest.importorskip("FlagEmbedding", reason="FlagEmbedding (the baseline) is not installed")
    root = tmp_path_factory.mktemp("bench")
    result = run_bench(preset="tiny", out=root / "out", work_dir=root / "work", backends=BACKENDS, name="smoke",
                       **SMALL)
    return root, result


def _finite_positive(*values):
    return all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values)


def test_files_and_metadata(bench, capsys):
    root, result = bench
    out = root / "out"
    assert sorted(p.name for p in out.iterdir()) == ["smoke.json", "smoke.md", "smoke.png"]
    assert json.loads((out / "smoke.json").read_text()) == json.loads(json.dumps(result))
    assert (out / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "smoke.md").read_text()
    assert "## Latency" in md and "## Corpus throughput" in md and "## Where m3rt's time goes" in md
    assert all(f"| {b} |" in md for b in BACKENDS)
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert result["versions"]["onnxruntime"] and result["versions"]["FlagEmbedding"]
    assert result["baseline"] == "pytorch" and result["preset"] == "tiny"
    params = result["parameters"]
    assert params["backends"] == BACKENDS and params["batch_sizes"] == [1, 2] and params["seq_lengths"] == [16, 32]
    assert params["corpus"]["size"] == 12 and len(params["corpus"]["token_lengths"]) == 12
    assert all(4 <= n <= 48 for n in params["corpus"]["token_lengths"])


def test_latency_rows_cover_the_grid(bench):
    _, result = bench
    keys = [(r["batch_size"], r["seq_length"], r["backend"]) for r in result["latency"]]
    assert sorted(keys) == sorted((b, n, name) for b in (1, 2) for n in (16, 32) for name in BACKENDS)
    for r in result["latency"]:
        assert 1 <= r["reps"] <= 2 and len(r["times_s"]) == r["reps"]
        assert _finite_positive(r["p50_s"], r["p90_s"], r["p99_s"], r["mean_s"], r["speedup_vs_baseline"], *r["times_s"])
        assert r["p50_s"] <= r["p90_s"] <= r["p99_s"]
    assert all(r["speedup_vs_baseline"] == 1.0 for r in result["latency"] if r["backend"] == "pytorch")
    sweep = {(r["seq_length"], r["backend"]): r for r in result["sweep"]}
    assert sorted(sweep) == sorted((n, name) for n in (8, 16) for name in BACKENDS)
    assert sweep[(16, "m3rt-fp32")]["from_grid"] and not sweep[(8, "m3rt-fp32")]["from_grid"]
    assert all(_finite_positive(r["p50_s"]) and r["batch_size"] == 1 for r in result["sweep"])


def test_corpus_and_stage_rows(bench):
    _, result = bench
    lengths = result["parameters"]["corpus"]["token_lengths"]
    assert [r["backend"] for r in result["corpus"]] == BACKENDS
    for r in result["corpus"]:
        assert r["texts"] == 12 and r["tokens"] == sum(lengths)
        assert _finite_positive(r["seconds"], r["texts_per_s"], r["tokens_per_s"], r["speedup_vs_baseline"])
    assert [r["backend"] for r in result["stages"]] == ["m3rt-fp32", "m3rt-int8"]
    assert [r["backend"] for r in result["cold_start"]] == ["m3rt-fp32", "m3rt-int8"]
    for r in result["cold_start"]:
        for run in (r["first"], r["warm"]):
            assert 0 < run["load_s"] < run["ready_s"] and run["import_s"] > 0
    for r in result["stages"]:
        assert list(r["seconds"]) == ["tokenize", "plan", "engine", "heads"]
        assert all(v >= 0 for v in r["seconds"].values()) and r["seconds"]["engine"] > 0
        assert sum(r["share"].values()) == pytest.approx(1.0)


def test_texts_tokenize_to_exact_lengths(tiny_artifact, tiny_model_dir):
    from transformers import AutoTokenizer

    from m3rt import M3Runtime
    from m3rt.bench.texts import ExactLengthTexts

    maker = ExactLengthTexts(M3Runtime(tiny_artifact).tokenizer, 8192)
    lengths = [2, 3, 5, 16, 100, 513]
    texts = maker.texts(lengths, np.random.default_rng(0))
    assert texts == maker.texts(lengths, np.random.default_rng(0))  # seeded: the same inputs every run
    assert texts[0] == ""  # 2 tokens: only <s> and </s>
    hf = AutoTokenizer.from_pretrained(str(tiny_model_dir))  # what FlagEmbedding tokenizes with
    assert [len(ids) for ids in hf(texts)["input_ids"]] == lengths
    with pytest.raises(RuntimeError, match="tokenizes to 16 tokens, not the 17"):
        maker.check([texts[3]], [17])


@pytest.mark.parametrize("kwargs, message", [
    (dict(backends=["flagembedding", "onnx-gpu"]), "unknown backend(s) 'onnx-gpu'"),
    (dict(backends=[]), "no backends given"),
    (dict(backends=["m3rt-fp32", "m3rt-fp32"]), "backends repeat"),
    (dict(preset="bge-m3-real"), "unknown preset 'bge-m3-real'"),
    (dict(preset="tiny", model="somewhere"), "not both"),
    (dict(batch_sizes=(1, 0)), "batch_sizes must be an integer >= 1"),
    (dict(seq_lengths=()), "seq_lengths is empty"),
    (dict(seq_lengths="16,x"), "seq_lengths must be integers"),
    (dict(corpus_min_tokens=64, corpus_max_tokens=32), "corpus_min_tokens (64) is above"),
    (dict(reps=0), "reps must be an integer >= 1"),
    (dict(time_budget_s=0), "time_budget_s must be a positive number"),
    (dict(name="../elsewhere"), "plain file name"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as err:
        run_bench(out=tmp_path / "out", work_dir=tmp_path / "work", **kwargs)
    assert message in str(err.value)
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()


def test_missing_package_is_named(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "FlagEmbedding" else real(name, *a))
    with pytest.raises(ImportError, match="backend flagembedding needs the FlagEmbedding package"):
        run_bench(work_dir=tmp_path / "work", out=tmp_path / "out")
    assert not (tmp_path / "work").exists()


def test_length_above_the_model_limit(bench):
    root, _ = bench
    with pytest.raises(ValueError, match="9000 tokens asked for, above the model's limit of 8192"):
        run_bench(preset="tiny", work_dir=root / "work", out=root / "unused", backends=["m3rt-fp32"],
                  seq_lengths=(16, 9000))


def test_cli_reuses_the_cached_artifacts(bench, capsys):
    root, _ = bench
    manifest = root / "work" / "artifact-fp32" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    args = ["bench", "--preset", "tiny", "--work-dir", str(root / "work"), "--out", str(root / "cli"),
            "--backends", "m3rt-fp32,flagembedding", "--batch-sizes", "1", "--seq-lengths", "8",
            "--sweep-lengths", "8,12", "--corpus-size", "3", "--corpus-max-tokens", "16", "--reps", "1",
            "--name", "cli"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "# m3rt CPU benchmark: cli" in printed.out
    assert f"wrote {root / 'cli' / 'cli.json'}" in printed.err  # says where the results went
    assert manifest.stat().st_mtime_ns == before  # reused, not exported again
    result = json.loads((root / "cli" / "cli.json").read_text())
    assert result["baseline"] == "m3rt-fp32"  # the first backend named is the baseline
    assert [r["backend"] for r in result["latency"]] == ["m3rt-fp32", "flagembedding"]
    assert (root / "cli" / "cli.png").is_file()


def test_cli_error_is_one_line(capsys):
    assert main(["bench", "--backends", "nope"]) == 1
    err = capsys.readouterr().err
    assert "m3rt: error: unknown backend(s) 'nope'" in err and "Traceback" not in err


def test_import_pulls_in_no_torch():
    code = "import sys, m3rt.bench; print('torch' in sys.modules, 'FlagEmbedding' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_cli_options_are_generated_from_bench_options():
    """One dataclass: every field is a --option of `m3rt bench` and its keyword in run_bench; results default
    to the user's cache, never a source tree."""
    from dataclasses import fields

    from m3rt.bench.options import BenchOptions
    from m3rt.cli import build_parser

    bench = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "bench")[1]
    common = {"-h", "-q", "-v"}  # help and the verbosity every subcommand takes
    flags = {a.option_strings[0] for a in bench._actions if a.option_strings and a.option_strings[0] not in common}
    assert flags == {"--" + f.name.replace("_", "-") for f in fields(BenchOptions)}
    assert all(a.help for a in bench._actions)
    opts = BenchOptions()
    assert opts.preset == "tiny" and opts.name == "cpu-tiny" and opts.out.endswith("bench/results")
    from m3rt.artifact import cache_dir

    assert opts.out.startswith(str(cache_dir()))
    with pytest.raises(TypeError, match="unexpected keyword"):
        BenchOptions(repetitions=3)
