"""The `m3rt` command line. Each subcommand calls one library function; encode, serve, embed-corpus and bench are
generated from their config dataclasses (cli/arguments.py), so each default is written once, in the library.

Errors are one line on stderr and a non-zero exit (M3RT_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from m3rt.artifact import PRECISIONS
from m3rt.cli.arguments import add_arguments, from_arguments


def _export(args) -> None:
    from m3rt.export import export

    path = export(args.source, args.out, precision=args.precision, opset=args.opset, overwrite=args.overwrite,
                  enforce_fidelity=not args.no_enforce_fidelity, attention=args.attention,
                  calibration=args.calibration)
    print(path)


def _build_engine(args) -> None:
    from m3rt.export.tensorrt_build import build_engine

    print(build_engine(args.artifact, max_batch_tokens=args.max_batch_tokens, batch_size=args.batch_size,
                       timing_cache=args.timing_cache))


def _encode(args) -> None:
    from m3rt.cli.progress import Progress
    from m3rt.corpus.encode_files import EncodeConfig, encode_files
    from m3rt.corpus.inputs import count_items

    config = EncodeConfig(**from_arguments(args, EncodeConfig))
    total = len(args.texts) if args.texts else count_items(config.input, jsonl=config.jsonl)
    progress = Progress(total, "encoding", enabled=not args.quiet, unit="texts")
    stats = encode_files(args.artifact, args.texts or None, config, progress=progress)
    progress.close()
    if not args.quiet:
        where = config.output or "stdout"
        said = f"{stats['texts']} texts encoded to {where}"
        if stats["skipped"]:
            said += f" (resumed after {stats['skipped']} already there)"
        if not stats["texts"] and not stats["skipped"]:
            said = "no texts in the input; nothing encoded"
        print(f"m3rt: {said}", file=sys.stderr)


def _serve(args) -> None:
    from m3rt.serve import ServeConfig, serve

    serve(args.artifact, ServeConfig(**from_arguments(args, ServeConfig), log_level="error" if args.quiet else "info"))


def _embed_corpus(args) -> None:
    from m3rt.cli.progress import Progress
    from m3rt.corpus import CorpusConfig, embed_corpus

    config = CorpusConfig(**from_arguments(args, CorpusConfig))
    progress = Progress(None, "embedding", enabled=not args.quiet, unit="rows")
    state = {"shard": None, "rows": 0}

    def report(shard: str, rows: int) -> None:  # rows so far in `shard`: the line counts rows over all shards
        if shard != state["shard"]:
            state["shard"], state["rows"] = shard, 0
        progress.update(rows - state["rows"])
        state["rows"] = rows

    done = embed_corpus(args.artifact, args.input, config, progress=report)
    progress.close()
    if not args.quiet:
        skipped = f", {len(done['shards_skipped'])} already there" if done["shards_skipped"] else ""
        print(f"m3rt: {done['rows']} rows in {len(done['shards_done'])} shard(s) written to {done['out']} "
              f"({', '.join(done['outputs'])}) in {done['seconds']:.1f} s{skipped}", file=sys.stderr)


def _verify(args) -> None:
    from m3rt.runtime.graph_check import verify

    m = verify(args.artifact)
    print(f"{args.artifact}: {len(m.files)} files match {m.root / 'manifest.json'} (sha256); the graph agrees with "
          "it (external data, dims, vocabulary, positions)")


def _num(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _info(args) -> None:
    from m3rt.artifact import read_manifest

    m = read_manifest(args.artifact, verify=not args.no_verify)
    dims, validation = m.dims, m.validation
    print(f"artifact      {args.artifact}")
    print(f"source        {m.source}  ({m.model_type})")
    print(f"precision     {m.precision}, opset {m.opset}, graph {m.graph}"
          + (f" + {m.external_data}" if m.external_data else ""))
    print(f"dims          hidden {dims.hidden}, colbert {dims.colbert}, vocab {dims.vocab}, layers {dims.layers}")
    print(f"max_length    {m.max_length} tokens (encode cuts at 512 by default, as FlagEmbedding; "
          "--max-length / max_length up to this)")
    print(f"special ids   {m.special_ids}  (sparse skips {list(m.sparse_skip_ids)})")
    for name, v in (validation.get("outputs") or {}).items():
        v = v if isinstance(v, dict) else {}
        print(f"validation    {name}: max abs err {_num(v.get('max_abs_err'), '.3g')} "
              f"(tolerance {_num(v.get('tolerance'), '.3g')})")
    reduced = validation.get(m.precision)
    if isinstance(reduced, dict):  # the fidelity report of an int8 / fp16 graph against the fp32 one
        metrics = reduced.get("metrics") if isinstance(reduced.get("metrics"), dict) else {}
        print(f"{m.precision} vs fp32   " + ", ".join(f"{k} {_num(v, '.4f')}" for k, v in metrics.items()))
        if reduced.get("failed"):
            print(f"              PAST THRESHOLD (not enforced at export): {', '.join(map(str, reduced['failed']))}")
    cpu = m.export_cpu
    if cpu is not None:
        print(f"exported on   {cpu.get('class')} ({cpu.get('model')})")
    print(f"created       {m.created} with " + ", ".join(f"{k} {v}" for k, v in m.versions.items()))
    print(f"files         {len(m.files)}" + ("" if args.no_verify else ", sha256 verified"))


def _doctor(args) -> None:
    from m3rt.doctor import diagnose

    r = diagnose()
    if args.json:
        print(json.dumps(r, indent=2))
        return
    cpu = r["cpu"]
    print(f"cpu           {cpu['model']}, {cpu['cores']} cores, {cpu['arch']}")
    print(f"cpu class     {cpu['class']}  (flags: {' '.join(cpu['flags']) or 'none reported'}; "
          f"int8 {'exact' if cpu['int8_exact'] else 'through saturating 16-bit sums'})")
    print(f"memory        {r['memory_gib']} GiB")
    ort = r["onnxruntime"]
    print(f"onnxruntime   {ort.get('version') or 'not installed'}"
          + (f"  (providers: {', '.join(ort['providers'])})" if ort.get("providers") else ""))
    print(f"gpus          {'; '.join(r['gpus']) or 'none seen (no nvidia-smi, or it lists none)'}")
    for name, why in r["backends"].items():
        print(f"backend       {name}: {'can run here' if why is None else why}")
    for line in r["auto"].values():
        print(f"backend auto  {line}")
    for line in r["advice"]:
        print(f"advice        {line}")


def _demo(args) -> None:
    import numpy as np

    from m3rt.demo import demo

    d = demo(out=args.out)
    np.set_printoptions(precision=4, suppress=True, linewidth=100)
    print(f"artifact: {d['artifact']}  (tiny TEST model: random weights, meaningless embeddings)")
    for i, row in enumerate(d["rows"]):
        print(f"\n[{i}] {row['text']!r}")
        print(f"  dense_vecs      shape {row['dense'].shape}, norm {np.linalg.norm(row['dense']):.4f}, "
              f"first {row['dense'][:6]}")
        print(f"  lexical_weights {row['n_tokens']} tokens, top {row['top_tokens']}")
        print(f"  colbert_vecs    shape {row['colbert'].shape}")
    print("\ncompute_score(q, p) for", d["pairs"], {k: [round(v, 4) for v in vals] for k, vals in d["scores"].items()})


def _bench(args) -> None:
    from pathlib import Path

    from m3rt.bench import run_bench
    from m3rt.bench.options import BenchOptions
    from m3rt.cli.progress import Progress

    progress = Progress(None, "bench")
    result = run_bench(progress=progress, **from_arguments(args, BenchOptions))
    progress.close()
    print(Path(result["files"]["md"]).read_text(encoding="utf-8"), end="")
    print("wrote " + ", ".join(result["files"].values()), file=sys.stderr)


def _tiny_model(args) -> None:
    from m3rt.testing.tiny_model import build_tiny_model

    print(build_tiny_model(args.out, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    from m3rt.version import __version__

    def verbosity(default):  # before or after the subcommand; a subcommand's default must not reset the other
        common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        common.add_argument("-q", "--quiet", action="store_true", default=default,
                            help="errors only: no progress, no log lines")
        common.add_argument("-v", "--verbose", action="store_true", default=default,
                            help="debug log lines too (which backends were skipped, and why)")
        return common

    common = verbosity(argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="m3rt", description="Fast, faithful BGE-M3 inference.", allow_abbrev=False,
                                parents=[verbosity(False)])
    p.add_argument("--version", action="version", version=f"m3rt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add = sub.add_parser

    def add_parser(name, **kwargs):  # every subcommand: exact option names, -q / -v, its own usage on errors
        kwargs.setdefault("allow_abbrev", False)
        return _add(name, parents=[common], **kwargs)

    sub.add_parser = add_parser

    e = sub.add_parser("export", help="export a BGE-M3 model directory (or hub id) to an ONNX artifact")
    e.add_argument("source", help="local directory in the BAAI/bge-m3 layout, or a hub id")
    e.add_argument("--out", required=True, help="artifact directory to write")
    e.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="fp32; for the CPU int8 (onnxruntime), int8-static (calibrated, OpenVINO; the fastest where "
                        "openvino is installed), bf16 (OpenVINO on CPUs with bf16); fp16 for GPUs. All but fp32 are "
                        "checked against the fp32 graph (default: fp32)")
    e.add_argument("--attention", default=None, choices=["fused", "standard"],
                   help="fused: onnxruntime's MultiHeadAttention (flash on the CPU); standard: plain ONNX ops, "
                        "for TensorRT and OpenVINO (default: fused; standard for int8-static and bf16)")
    e.add_argument("--calibration", default=None,
                   help="int8-static: a file of texts (one per line, your domain) to calibrate on (default: the "
                        "multilingual text m3rt ships)")
    e.add_argument("--no-enforce-fidelity", action="store_true",
                   help="record int8 fidelity failures instead of failing (random-weight benchmark models only)")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17, the lowest supported)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing artifact in --out")
    e.set_defaults(func=_export)

    g = sub.add_parser("build-engine", help="build a TensorRT engine (FP16) inside an artifact exported with "
                                            "--precision fp16 --attention standard; needs tensorrt and a GPU")
    g.add_argument("artifact", help="artifact directory (fp16, --attention standard)")
    g.add_argument("--max-batch-tokens", type=int, default=16384, help="largest rows x tokens per batch")
    g.add_argument("--batch-size", type=int, default=256, help="largest rows per batch")
    g.add_argument("--timing-cache", default=None, help="TensorRT timing cache to reuse (default: in the artifact)")
    g.set_defaults(func=_build_engine)

    from m3rt.corpus import CorpusConfig
    from m3rt.corpus.encode_files import EncodeConfig
    from m3rt.serve import ServeConfig

    def generated(name, help, positionals, config, func):  # options from the config dataclass's fields
        cmd = sub.add_parser(name, help=help)
        for arg, arg_help, *nargs in positionals:
            cmd.add_argument(arg, help=arg_help, **({"nargs": nargs[0]} if nargs else {}))
        add_arguments(cmd, config)
        cmd.set_defaults(func=func)

    generated("encode", "encode texts with an artifact, streaming: JSONL (or npy, parquet) out, one row per text, "
                        "written as each chunk is done",
              [("artifact", "artifact directory (from m3rt export)"),
               ("texts", "texts to encode (else --input or stdin)", "*")], EncodeConfig, _encode)
    generated("serve", "serve an artifact over HTTP: TEI, OpenAI and M3-native routes, dynamic batching, /metrics "
                       "(pip install 'm3rt[serve]')", [("artifact", "artifact directory")], ServeConfig, _serve)
    generated("embed-corpus", "encode a corpus (JSONL / Parquet shards) into Parquet shards, in-process or on Ray "
                              "Data; resumable by shard",
              [("artifact", "artifact directory (a path every node can read) or an http(s) URL"),
               ("input", "a .jsonl / .parquet file, or a folder of them (one output shard each)")],
              CorpusConfig, _embed_corpus)

    v = sub.add_parser("verify", help="re-hash every file of an artifact against its manifest and check the graph "
                                      "against it")
    v.add_argument("artifact", help="artifact directory")
    v.set_defaults(func=_verify)

    i = sub.add_parser("info", help="summarise an artifact's manifest")
    i.add_argument("artifact", help="artifact directory")
    i.add_argument("--no-verify", action="store_true", help="skip the sha256 check of every file")
    i.set_defaults(func=_info)

    dr = sub.add_parser("doctor", help="what this machine is, which backends can run here, and what to export")
    dr.add_argument("--json", action="store_true", help="the report as JSON")
    dr.set_defaults(func=_doctor)

    d = sub.add_parser("demo", help="build the tiny TEST model, export it, encode a few texts")
    d.add_argument("--out", default="m3rt-demo", help="working directory (default: ./m3rt-demo)")
    d.set_defaults(func=_demo)

    from m3rt.bench.options import BenchOptions

    generated("bench", "CPU latency and throughput of m3rt against FlagEmbedding; writes .json/.md/.png", [],
              BenchOptions, _bench)

    t = sub.add_parser("tiny-model", help="write the tiny BGE-M3-shaped TEST model (random weights)")
    t.add_argument("out", help="directory to write the model to")
    t.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    t.set_defaults(func=_tiny_model)
    return p


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` runs (an export removes its staging files)."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the subcommand's own usage, not the top level's
        parser._subparsers._group_actions[0].choices[args.command].error(
            f"unrecognized arguments: {' '.join(extra)}")
    if threading_is_main():
        signal.signal(signal.SIGTERM, _terminate)
    level = logging.ERROR if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    for noisy in ("transformers", "torch", "onnxruntime", "nncf", "openvino", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # m3rt's log lines on stderr for this command only: nothing is left configured when main() returns.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("m3rt: %(message)s"))
    logger = logging.getLogger("m3rt")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        return _run(args)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _run(args) -> int:
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("m3rt: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("m3rt: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return 0
    except Exception as e:  # one clear line, no traceback, unless asked for
        if os.environ.get("M3RT_DEBUG"):
            raise
        from m3rt.errors import M3RTError

        known = isinstance(e, (M3RTError, ValueError, TypeError, OSError, ImportError))
        kind = "error" if known else f"internal error ({type(e).__name__}; set M3RT_DEBUG=1 for the traceback)"
        print(f"m3rt: {kind}: {e}", file=sys.stderr)
        return 1
    return 0


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


