"""`m3rt encode` and `m3rt embed-corpus` as a careless or hostile user meets them, each a real subprocess with
the progress line on: every probe ends in one clear error line or a correct result, with no data lost and
memory bounded by what is kept, not by what is sent."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Parquet outputs (embed-corpus, encode --format parquet) need the parquet extra; the slim runtime tier has none.
needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                                   reason="writes Parquet: pyarrow (the parquet extra) is not installed")

def m3rt(*args, stdin=None, progress_now=False, without_pyarrow=False, timeout=120,
         **kw) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; progress_now: its progress line drawn from the first update on (the same code
    path a run longer than two seconds takes); without_pyarrow: pyarrow made unimportable, as in an install
    without the parquet extra."""
    prelude = (("import m3rt.cli.progress as p; p.FIRST_DRAW_S = 0; " if progress_now else "")
               + ("sys.modules['pyarrow'] = None; " if without_pyarrow else ""))
    head = (["-c", f"import sys; {prelude}from m3rt.cli import main; sys.exit(main(sys.argv[1:]))"] if prelude
            else ["-m", "m3rt.cli"])
    return subprocess.run([sys.executable, *head, *map(str, args)], input=stdin, capture_output=True,
                          timeout=timeout, **kw)


# The CLI, writing its own peak RSS (VmHWM, reset at exec: a forked child's ru_maxrss would carry the parent's).
WITH_PEAK = ("import sys; from m3rt.cli import main; rc = main(sys.argv[2:]); "
             "open(sys.argv[1], 'w').write(next(l.split()[1] for l in open('/proc/self/status') "
             "if l.startswith('VmHWM'))); sys.exit(rc)")


def peak(args: list, tmp_path: Path) -> tuple[float, float, int, bytes]:
    """(seconds, peak RSS MiB, exit status, stderr) of one CLI run."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", WITH_PEAK, str(tmp_path / "peak"), *map(str, args)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    seconds = time.perf_counter() - t
    mb = int((tmp_path / "peak").read_text()) / 1024 if (tmp_path / "peak").is_file() else float("nan")
    (tmp_path / "peak").unlink(missing_ok=True)
    return seconds, mb, res.returncode, res.stderr


def one_error_line(res) -> str:
    err = res.stderr.decode()
    assert res.returncode == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("m3rt: error")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------------- progress
@needs_pyarrow
def test_embed_corpus_progress_with_an_unknown_total_draws_instead_of_crashing(tiny_artifact, tmp_path):
    """embed-corpus (rows: no total) used to die at the second update."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": f"text number {i}"}) + "\n" for i in range(60)))
    res = m3rt("embed-corpus", tiny_artifact, corpus, "--out", tmp_path / "o", progress_now=True)
    assert res.returncode == 0, res.stderr.decode()
    assert "embedding " in res.stderr.decode() and "60 rows in 1 shard(s)" in res.stderr.decode()


def test_encode_progress_with_an_unknown_total_draws_instead_of_crashing(tiny_artifact):
    """encode from stdin (no total) used to die at the second update."""
    res = m3rt("encode", tiny_artifact, "--chunk-size", "4", "--batch-size", "2", progress_now=True,
               stdin="\n".join(f"line {i}" for i in range(40)).encode())
    assert res.returncode == 0, res.stderr.decode()
    assert len(res.stdout.splitlines()) == 40 and "encoding " in res.stderr.decode()


def test_progress_of_a_slow_stdin_past_two_seconds(tiny_artifact, tmp_path):
    """The plain CLI, no hooks: texts trickle in on a pipe for more than the progress line's two seconds."""
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "m3rt.cli", "encode", str(tiny_artifact), "--chunk-size",
                                 "5"], stdin=subprocess.PIPE, stdout=out, stderr=err)
        for i in range(14):
            proc.stdin.write(b"".join(b"text %d\n" % (i * 5 + k) for k in range(5)))
            proc.stdin.flush()
            time.sleep(0.25)
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0, (tmp_path / "err").read_text()
    assert len((tmp_path / "out").read_bytes().splitlines()) == 70
    assert "encoding " in (tmp_path / "err").read_text()


# ---------------------------------------------------------------------------------- bounded work per text
def test_a_50_mb_line_costs_what_max_length_keeps(tiny_artifact, runtime, tmp_path):
    words = np.random.default_rng(0).choice(["search", "ranking", "lobo", "北京", "函数", "the", "BM25"], 9_000_000)
    text = " ".join(words.tolist())[:50_000_000]
    big = tmp_path / "big.txt"
    big.write_text(text + "\n")
    idle_s, idle_mb, _, _ = peak(["encode", tiny_artifact, "hi", "--output", tmp_path / "idle.jsonl"], tmp_path)
    secs, mb, status, err = peak(["encode", tiny_artifact, "--input", big, "--output", tmp_path / "o.jsonl"], tmp_path)
    assert status == 0, err
    # The figures (bench/results/long-line.md) are ~0.6 s and ~+150 MB; these bounds only catch a regression to
    # work that grows with the line (tokenizing all of it took 112 s and 8 GB).
    assert mb - idle_mb < 300, (mb, idle_mb)
    assert secs - idle_s < 10, (secs, idle_s)
    row = json.loads((tmp_path / "o.jsonl").read_text())
    want = runtime.encode([text[:20_000]])["dense_vecs"][0]  # 512 tokens come from far fewer characters
    np.testing.assert_allclose(row["dense_vecs"], want, atol=1e-6)
    assert b"1 of 1 texts were cut to max_length=512" in err


# ----------------------------------------------------------------------------------- outputs survive
@pytest.mark.parametrize("fmt, suffix", [("jsonl", "jsonl"), ("npy", "npy"),
                                         pytest.param("parquet", "parquet", marks=needs_pyarrow)])
def test_an_existing_output_is_untouched_by_a_run_that_cannot_start(tiny_artifact, tmp_path, fmt, suffix):
    out = tmp_path / f"p.{suffix}"
    out.write_text("DATA\n")
    for args in (["--input", tmp_path / "missing.txt"], ["--input", tmp_path], ["hi", "--backend", "nope"]):
        line = one_error_line(m3rt("encode", tiny_artifact, *args, "--format", fmt, "--output", out, "--overwrite"))
        assert "missing.txt: no such file" in line or "is a folder" in line or "unknown backend" in line, line
        assert out.read_text() == "DATA\n"
    line = one_error_line(m3rt("encode", tmp_path / "no-artifact", "hi", "--format", fmt, "--output", out,
                               "--overwrite"))
    assert "artifact directory not found" in line and out.read_text() == "DATA\n"
    line = one_error_line(m3rt("encode", tiny_artifact, "hi", "--format", fmt, "--output", out))
    assert "exists; pass --resume to continue it, or --overwrite to replace it" in line
    assert out.read_text() == "DATA\n"
    res = m3rt("encode", tiny_artifact, "hi", "there", "--format", fmt, "--output", out, "--overwrite")
    assert res.returncode == 0, res.stderr.decode()
    assert out.read_bytes() != b"DATA\n" and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("fmt", ["npy", pytest.param("parquet", marks=needs_pyarrow)])
def test_a_failed_npy_or_parquet_run_leaves_the_previous_file(tiny_artifact, tmp_path, fmt):
    """A run that dies mid-way (here: a bad line in the input) leaves no partial file under the output's name:
    the previous output stays as it was."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(f"text {i}") + "\n" for i in range(30)) + "{not json\n")
    out = tmp_path / f"o.{fmt}"
    out.write_text("PREVIOUS")
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", src, "--format", fmt, "--output", out,
                               "--overwrite", "--chunk-size", "8"))
    assert "in.jsonl:31: not valid JSON" in line
    assert out.read_text() == "PREVIOUS" and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@needs_pyarrow
def test_parquet_on_a_full_disk_leaves_no_partial_file(tiny_artifact, tmp_path):
    """A file-size limit stands in for a full disk: the write fails with the system's reason, nothing takes the
    output's name."""
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"some longer text number {i} " * 8 for i in range(2000)) + "\n")

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    out = tmp_path / "o.parquet"
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", src, "--format", "parquet", "--colbert",
                               "--output", out, "--chunk-size", "64", preexec_fn=small_disk))
    assert "File too large" in line or "No space left" in line or "Errno 27" in line, line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_resume_refuses_a_run_with_other_outputs_or_another_input(tiny_artifact, tmp_path):
    first = tmp_path / "first.txt"
    first.write_text("\n".join(f"first input {i}" for i in range(100)) + "\n")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(f"another input {i}" for i in range(300)) + "\n")
    out = tmp_path / "o.jsonl"
    assert m3rt("encode", tiny_artifact, "--input", first, "--dense", "--output", out).returncode == 0
    before = out.read_bytes()
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", other, "--sparse", "--resume", "--output", out))
    assert "written with other settings (outputs: ['dense'] -> ['sparse'])" in line
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", other, "--resume", "--output", out))
    assert "the input's first 100 texts differ from those it was written from" in line
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", first, "--resume", "--max-length", "16",
                               "--output", out))
    assert "max_length: 512 -> 16" in line
    assert out.read_bytes() == before
    # The same input, longer: resumes after the 100 rows, and the whole is what one run gives.
    longer = tmp_path / "longer.txt"
    longer.write_text(first.read_text() + "".join(f"more {i}\n" for i in range(50)))
    res = m3rt("encode", tiny_artifact, "--input", longer, "--resume", "--output", out)
    assert res.returncode == 0 and b"resumed after 100" in res.stderr, res.stderr
    whole = tmp_path / "whole.jsonl"
    assert m3rt("encode", tiny_artifact, "--input", longer, "--output", whole).returncode == 0
    assert out.read_bytes() == whole.read_bytes()
    # An output m3rt did not write (no run record) is not resumed.
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"index": 0}\n')
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", first, "--resume", "--output", foreign))
    assert "no run record" in line and foreign.read_text() == '{"index": 0}\n'


def test_resume_reads_only_the_tail_of_a_large_output(tiny_artifact, tmp_path):
    from m3rt.corpus.run_record import InputDigest, RunRecord

    src = tmp_path / "in.txt"
    texts = [f"text {i}" for i in range(200_005)]
    src.write_text("\n".join(texts) + "\n")
    out = tmp_path / "o.jsonl"
    # A real record and row, then 200,000 rows of ~700 bytes (140 MB) as an interrupted run leaves them.
    one = tmp_path / "one.txt"
    one.write_text(texts[0] + "\n")
    assert m3rt("encode", tiny_artifact, "--input", one, "--output", out).returncode == 0
    record = RunRecord.load(out)
    row = json.loads(out.read_text())
    digest = InputDigest()
    with open(out, "w") as f:
        for i in range(200_000):
            f.write(json.dumps({**row, "index": i}) + "\n")
            digest.add(texts[i], None)
    f_size = out.stat().st_size
    record.checkpoints = [(200_000, digest.hexdigest())]
    record.save()
    _, idle_mb, _, _ = peak(["encode", tiny_artifact, "hi", "--output", tmp_path / "idle.jsonl"], tmp_path)
    secs, mb, status, err = peak(["encode", tiny_artifact, "--input", src, "--resume", "--output", out], tmp_path)
    assert status == 0, err
    assert b"resumed after 200000" in err and b"5 texts encoded" in err
    assert mb - idle_mb < 60, (mb, idle_mb, f_size)  # the output is 140 MB; it was read into memory before
    lines = out.read_bytes().splitlines()
    assert len(lines) == 200_005 and json.loads(lines[-1])["index"] == 200_004


# ----------------------------------------------------------------------------------- one writer per output
@needs_pyarrow
def test_a_second_embed_corpus_job_into_the_same_out_fails_at_once(tiny_artifact, tmp_path):
    from m3rt.locking import exclusive_lock

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": 1, "text": "a"}\n')
    out = tmp_path / "out"
    with exclusive_lock(out, "an embed-corpus job"):  # the first job, still running
        t = time.perf_counter()
        line = one_error_line(m3rt("embed-corpus", tiny_artifact, corpus, "--out", out))
        assert time.perf_counter() - t < 30
    assert f"another embed-corpus job (pid {os.getpid()}:" in line and not out.exists()
    assert m3rt("embed-corpus", tiny_artifact, corpus, "--out", out).returncode == 0  # free again


def test_a_second_encode_into_the_same_output_fails_at_once(tiny_artifact, tmp_path):
    from m3rt.locking import exclusive_lock

    out = tmp_path / "o.jsonl"
    with exclusive_lock(out, "an m3rt encode"):
        line = one_error_line(m3rt("encode", tiny_artifact, "hi", "--output", out))
    assert f"another m3rt encode (pid {os.getpid()}:" in line and not out.exists()


# ----------------------------------------------------------------------------------------- odd inputs
def test_fifos_process_substitution_and_folders_as_input(tiny_artifact, tmp_path):
    fifo = tmp_path / "texts.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w") as f:
            f.write("one\ntwo\nthree\n")

    threading.Thread(target=feed, daemon=True).start()
    res = m3rt("encode", tiny_artifact, "--input", fifo)
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 3, res.stderr.decode()
    cmd = f"{sys.executable} -m m3rt.cli encode {tiny_artifact} --input <(printf 'a\\nb\\n')"
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=120)
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 2, res.stderr.decode()
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", tmp_path))
    assert "is a folder" in line
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.jsonl").write_text('{"id": 1, "text": "x"}\n')
    os.mkfifo(shards / "b.jsonl")
    line = one_error_line(m3rt("embed-corpus", tiny_artifact, shards, "--out", tmp_path / "o"))
    assert "b.jsonl: not a regular file" in line


@needs_pyarrow
def test_ids_beyond_64_bits_are_named_by_line(tiny_artifact, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": 1, "text": "a"}\n{"id": 36893488147419103232, "text": "b"}\n')
    line = one_error_line(m3rt("embed-corpus", tiny_artifact, corpus, "--out", tmp_path / "o"))
    assert "c.jsonl:2: 'id' 36893488147419103232 does not fit in 64 bits" in line
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", corpus, "--format", "parquet", "--output",
                               tmp_path / "o.parquet"))
    assert "id 36893488147419103232 does not fit in 64 bits" in line and not (tmp_path / "o.parquet").exists()


def test_deeply_nested_json_inputs_are_named(tiny_artifact, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "a.json").write_text(deep)
    (tmp_path / "b.jsonl").write_text('"fine"\n' + deep + "\n")
    assert "a.json: JSON nested too deeply" in one_error_line(m3rt("encode", tiny_artifact, "--input",
                                                                   tmp_path / "a.json"))
    assert "b.jsonl:2: JSON nested too deeply" in one_error_line(m3rt("encode", tiny_artifact, "--input",
                                                                      tmp_path / "b.jsonl"))


# ------------------------------------------------------------------------- the hostile run's findings
def test_an_input_without_line_ends_is_refused_with_memory_bounded(tiny_artifact, tmp_path):
    secs, mb, status, err = peak(["encode", tiny_artifact, "--input", "/dev/zero", "--output", tmp_path / "o.jsonl"],
                                 tmp_path)
    assert status == 1 and b"/dev/zero:1: a line longer than 64 MiB" in err and b"Traceback" not in err
    assert mb < 400, mb  # the one line it holds before refusing, not all of /dev/zero


def test_the_input_is_never_the_output(tiny_artifact, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("one\ntwo\n")
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", f, "--output", f, "--overwrite"))
    assert "is the input too" in line and f.read_text() == "one\ntwo\n"
    (tmp_path / "link.txt").symlink_to(f)
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", tmp_path / "link.txt", "--output", f, "--overwrite"))
    assert "is the input too" in line and f.read_text() == "one\ntwo\n"


def test_a_failed_overwrite_keeps_the_previous_jsonl_output_and_its_record(tiny_artifact, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("\n".join(f"text {i}" for i in range(30)) + "\n")
    out = tmp_path / "o.jsonl"
    assert m3rt("encode", tiny_artifact, "--input", good, "--output", out).returncode == 0
    before = out.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(f"new {i}") + "\n" for i in range(20)) + "{not json\n")
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", bad, "--output", out, "--overwrite",
                               "--chunk-size", "4"))
    assert "bad.jsonl:21: not valid JSON" in line and out.read_bytes() == before
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", good, "--output", out, "--overwrite",
                               "--encoding", "nonsense"))
    assert "unknown encoding 'nonsense'" in line and out.read_bytes() == before
    # The record still describes the output: resuming it with its input is accepted.
    res = m3rt("encode", tiny_artifact, "--input", good, "--output", out, "--resume")
    assert res.returncode == 0 and b"resumed after 30" in res.stderr, res.stderr
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_resume_refuses_an_output_cut_below_its_record(tiny_artifact, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"text {i}" for i in range(40)) + "\n")
    out = tmp_path / "o.jsonl"
    assert m3rt("encode", tiny_artifact, "--input", src, "--output", out, "--chunk-size", "10").returncode == 0
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:15]))  # cut by hand below the last checkpoint (40)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(f"other {i}" for i in range(60)) + "\n")
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", other, "--output", out, "--resume"))
    assert "15 complete rows, fewer than the 40 its run record says" in line


@needs_pyarrow
def test_mixed_id_types_into_parquet_are_named_by_row(tiny_artifact, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"id": i, "text": f"t {i}"}) + "\n" for i in range(6))
                     + "".join(json.dumps({"id": f"s{i}", "text": f"t {i}"}) + "\n" for i in range(6)))
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", mixed, "--format", "parquet", "--chunk-size", "4",
                               "--output", tmp_path / "m.parquet"))
    assert "input row 6: a str id after int ones" in line and not (tmp_path / "m.parquet").exists()


def test_parquet_without_pyarrow_is_one_error_naming_the_extra_before_any_work(tiny_artifact, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": 1, "text": "a"}\n')
    out = tmp_path / "o.parquet"
    out.write_text("PREVIOUS")
    line = one_error_line(m3rt("embed-corpus", tiny_artifact, corpus, "--out", tmp_path / "o", without_pyarrow=True))
    assert "embed-corpus writes Parquet and needs pyarrow: pip install 'm3rt[parquet]'" in line, line
    assert not (tmp_path / "o").exists()
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", corpus, "--format", "parquet", "--output", out,
                               "--overwrite", without_pyarrow=True))
    assert "--format parquet needs pyarrow: pip install 'm3rt[parquet]'" in line and out.read_text() == "PREVIOUS"


def test_utf16_input_odd_ids_and_options_are_handled(tiny_artifact, tmp_path):
    f = tmp_path / "u16.txt"
    f.write_bytes("première\nsecond\n".encode("utf-16"))
    res = m3rt("encode", tiny_artifact, "--input", f, "--encoding", "utf-16")
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 2, res.stderr
    nan = tmp_path / "nan.jsonl"
    nan.write_text('{"id": NaN, "text": "a"}\n')
    assert "input row 0: id nan is not valid JSON" in one_error_line(m3rt("encode", tiny_artifact, "--input", nan))
    surrogate = tmp_path / "s.jsonl"
    surrogate.write_text("".join(json.dumps(f"fine {i}") + "\n" for i in range(9)) + '"bad \\ud800 text"\n')
    line = one_error_line(m3rt("encode", tiny_artifact, "--input", surrogate, "--chunk-size", "4"))
    assert "text 9 is not valid Unicode" in line
    assert "--sparse-tokens" in one_error_line(m3rt("encode", tiny_artifact, "hi", "--sparse-tokens"))
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in one_error_line(m3rt("encode", tiny_artifact, "hi", "--format", "npy",
                                                       "--output", fifo, "--overwrite"))


def test_one_writer_per_output_whatever_its_name(tiny_artifact, tmp_path):
    from m3rt.locking import exclusive_lock

    out = tmp_path / "o.jsonl"
    out.write_text("")
    (tmp_path / "alias.jsonl").symlink_to(out)
    with exclusive_lock(out, "an m3rt encode"):
        line = one_error_line(m3rt("encode", tiny_artifact, "hi", "--output", tmp_path / "alias.jsonl",
                                   "--overwrite"))
    assert "is writing it" in line
