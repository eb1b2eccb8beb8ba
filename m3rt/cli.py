"""The `m3rt` command line. Each subcommand calls one library function with the same keyword names.

Errors are one line on stderr and a non-zero exit (M3RT_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys

from m3rt.artifact import PRECISIONS


def _export(args) -> None:
    from m3rt.export import export

    path = export(args.source, args.out, precision=args.precision, opset=args.opset, overwrite=args.overwrite,
                  enforce_fidelity=not args.no_enforce_fidelity, attention=args.attention)
    print(path)


def _build_engine(args) -> None:
    from m3rt.export.tensorrt_build import build_engine

    print(build_engine(args.artifact, max_batch_tokens=args.max_batch_tokens, batch_size=args.batch_size,
                       timing_cache=args.timing_cache))


def _read_texts(args) -> list[str]:
    if args.texts and args.input:
        raise ValueError("give texts as arguments or --input, not both")
    if args.texts:
        return list(args.texts)
    stream = sys.stdin if args.input in (None, "-") else open(args.input, encoding="utf-8")
    name = "<stdin>" if stream is sys.stdin else args.input
    if stream is sys.stdin and sys.stdin.isatty():
        raise ValueError("no texts: pass them as arguments, --input FILE, or pipe them on stdin")
    jsonl = args.jsonl or (name.endswith(".jsonl"))
    texts = []
    with stream:
        for n, line in enumerate(stream, 1):
            line = line.rstrip("\n")
            if not jsonl:
                texts.append(line)
                continue
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{name}:{n}: not valid JSON ({e.msg})") from None
            if isinstance(item, dict):
                item = item.get(args.field)
            if not isinstance(item, str):
                raise ValueError(f"{name}:{n}: expected a JSON string or an object with a string {args.field!r} field")
            texts.append(item)
    return texts


def _encode(args) -> None:
    from m3rt import M3Runtime

    texts = _read_texts(args)
    dense = args.dense or not (args.sparse or args.colbert)
    from m3rt.progress import Progress

    progress = Progress(len(texts), "encoding")
    rt = M3Runtime(args.artifact, backend=args.backend, progress=progress)
    result = rt.encode(texts, batch_size=args.batch_size, max_length=args.max_length, return_dense=dense,
                       return_sparse=args.sparse, return_colbert_vecs=args.colbert)
    progress.close()
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    with out if args.output else contextlib.nullcontext(out):
        for i in range(len(texts)):
            row: dict = {"index": i}
            if dense:
                row["dense_vecs"] = result["dense_vecs"][i].tolist()
            if args.sparse:
                row["lexical_weights"] = {k: float(v) for k, v in result["lexical_weights"][i].items()}
            if args.colbert:
                row["colbert_vecs"] = result["colbert_vecs"][i].tolist()
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _verify(args) -> None:
    from m3rt.artifact import verify_artifact

    m = verify_artifact(args.artifact)
    print(f"{args.artifact}: {len(m.data['files'])} files match {m.root / 'manifest.json'} (sha256)")


def _num(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _info(args) -> None:
    from m3rt.artifact import read_manifest

    m = read_manifest(args.artifact, verify=not args.no_verify).data
    dims = m["dims"]
    print(f"artifact      {args.artifact}")
    print(f"source        {m['source']}  ({m['model_type']})")
    print(f"precision     {m['precision']}, opset {m['opset']}, graph {m['graph']}"
          + (f" + {m['external_data']}" if m.get("external_data") else ""))
    print(f"dims          hidden {dims['hidden']}, colbert {dims['colbert']}, vocab {dims['vocab']}, "
          f"layers {dims.get('layers')}")
    print(f"max_length    {m['max_length']} tokens")
    print(f"special ids   {m['special_ids']}  (sparse skips {m['sparse_skip_ids']})")
    for name, v in (m["validation"].get("outputs") or {}).items():
        v = v if isinstance(v, dict) else {}
        print(f"validation    {name}: max abs err {_num(v.get('max_abs_err'), '.3g')} "
              f"(tolerance {_num(v.get('tolerance'), '.3g')})")
    reduced = m["validation"].get(m["precision"])
    if isinstance(reduced, dict):  # the fidelity report of an int8 / fp16 graph against the fp32 one
        metrics = reduced.get("metrics") if isinstance(reduced.get("metrics"), dict) else {}
        print(f"{m['precision']} vs fp32   " + ", ".join(f"{k} {_num(v, '.4f')}" for k, v in metrics.items()))
        if reduced.get("failed"):
            print(f"              PAST THRESHOLD (not enforced at export): {', '.join(map(str, reduced['failed']))}")
    cpu = m.get("export_cpu")
    if isinstance(cpu, dict):
        print(f"exported on   {cpu.get('class')} ({cpu.get('model')})")
    print(f"created       {m.get('created')} with " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print(f"files         {len(m['files'])}" + ("" if args.no_verify else ", sha256 verified"))


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
    from m3rt.bench import run_bench
    from m3rt.bench.options import from_arguments

    from m3rt.progress import Progress

    progress = Progress(None, "bench")
    result = run_bench(progress=progress, **from_arguments(args))
    progress.close()
    from pathlib import Path

    print(Path(result["files"]["md"]).read_text(encoding="utf-8"), end="")
    print("wrote " + ", ".join(result["files"].values()), file=sys.stderr)


def _tiny_model(args) -> None:
    from m3rt.testing.tiny_model import build_tiny_model

    print(build_tiny_model(args.out, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m3rt", description="Fast, faithful BGE-M3 inference.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="export a BGE-M3 model directory (or hub id) to an ONNX artifact")
    e.add_argument("source", help="local directory in the BAAI/bge-m3 layout, or a hub id")
    e.add_argument("--out", required=True, help="artifact directory to write")
    e.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="fp32; int8 for the CPU, fp16 for GPUs (both checked against the fp32 graph)")
    e.add_argument("--attention", default="fused", choices=["fused", "standard"],
                   help="fused: onnxruntime's MultiHeadAttention (flash on the CPU); standard: plain ONNX ops, "
                        "for TensorRT")
    e.add_argument("--no-enforce-fidelity", action="store_true",
                   help="record int8 fidelity failures instead of failing (random-weight benchmark models only)")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--overwrite", action="store_true", help="replace an existing artifact in --out")
    e.set_defaults(func=_export)

    g = sub.add_parser("build-engine", help="build a TensorRT engine (FP16) inside an artifact exported with "
                                            "--precision fp16 --attention standard; needs tensorrt and a GPU")
    g.add_argument("artifact")
    g.add_argument("--max-batch-tokens", type=int, default=16384, help="largest rows x tokens per batch")
    g.add_argument("--batch-size", type=int, default=256, help="largest rows per batch")
    g.add_argument("--timing-cache", default=None, help="TensorRT timing cache to reuse (default: in the artifact)")
    g.set_defaults(func=_build_engine)

    c = sub.add_parser("encode", help="encode texts with an artifact; JSONL out, one line per text")
    c.add_argument("artifact")
    c.add_argument("texts", nargs="*", help="texts to encode (else --input or stdin)")
    c.add_argument("--input", help="file of texts, one per line ('-' for stdin); .jsonl is read as JSONL")
    c.add_argument("--jsonl", action="store_true", help="input lines are JSON strings or objects")
    c.add_argument("--field", default="text", help="text field of JSONL objects (default: text)")
    c.add_argument("--dense", action="store_true", help="output dense_vecs (the default when none is chosen)")
    c.add_argument("--sparse", action="store_true", help="output lexical_weights")
    c.add_argument("--colbert", action="store_true", help="output colbert_vecs")
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--max-length", type=int, default=512)
    c.add_argument("--backend", default="auto")
    c.add_argument("--output", help="write JSONL here instead of stdout")
    c.set_defaults(func=_encode)

    v = sub.add_parser("verify", help="re-hash every file of an artifact against its manifest")
    v.add_argument("artifact")
    v.set_defaults(func=_verify)

    i = sub.add_parser("info", help="summarise an artifact's manifest")
    i.add_argument("artifact")
    i.add_argument("--no-verify", action="store_true", help="skip the sha256 check of every file")
    i.set_defaults(func=_info)

    dr = sub.add_parser("doctor", help="what this machine is, which backends can run here, and what to export")
    dr.add_argument("--json", action="store_true", help="the report as JSON")
    dr.set_defaults(func=_doctor)

    d = sub.add_parser("demo", help="build the tiny TEST model, export it, encode a few texts")
    d.add_argument("--out", default="m3rt-demo", help="working directory (default: ./m3rt-demo)")
    d.set_defaults(func=_demo)

    b = sub.add_parser("bench", help="CPU latency and throughput of m3rt against FlagEmbedding; writes .json/.md/.png")
    from m3rt.bench.options import add_arguments

    add_arguments(b)  # generated from BenchOptions: the library's keywords, one for one
    b.set_defaults(func=_bench)

    t = sub.add_parser("tiny-model", help="write the tiny BGE-M3-shaped TEST model (random weights)")
    t.add_argument("out")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_tiny_model)
    return p


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` runs (an export removes its staging files)."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading_is_main():
        signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.INFO, format="m3rt: %(message)s", stream=sys.stderr)
    for noisy in ("transformers", "torch", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
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


if __name__ == "__main__":
    sys.exit(main())
