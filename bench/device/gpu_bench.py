"""GPU: onnxruntime CUDA fp16 against PyTorch fp16 eager (SDPA), same random bge-m3-shape weights, one run.

  python bench/device/gpu_bench.py prepare --work DIR [--shape bge-m3|tiny]   # CPU: model, fp32 + fp16 artifacts
  python bench/device/gpu_bench.py run --work DIR --out OUT [--budget-s N]     # GPU: everything below

run measures, in this order (each part skipped with its reason when the budget or a package is missing):
1. the card's fp16 matmul rate (8192^3, CUDA events), to state batch-32 x 512 as a share of it;
2. latency, host ids in -> the three outputs on the host, median after warm-up, over a batch x length grid:
   pytorch-fp16 (eager SDPA, the baseline), onnxruntime-cuda (m3rt's engine: device buffers bound once per
   shape, inputs copied in place; its outputs checked against a fresh binding's), onnxruntime-cuda-unbound
   (a new IO binding per call), and on the standard-attention artifact (no If nodes) the engine and
   onnxruntime's CUDA graph capture (the fused artifact's If nodes rule graphs out);
3. fidelity of fp16 against the fp32 graph (onnxruntime CUDA, TF32 off): FIDELITY_TEXTS, padded batches, and
   inputs that overflow fp16 elsewhere (8192 tokens; long runs of one repeated token): NaN / inf counts, dense
   and ColBERT cosines; PyTorch fp16's own cosines beside them;
4. M3Runtime end to end on the GPU against the CPU runtime on the fp32 artifact;
5. iter_encode streamed: outputs against encode's, tokenize overlap on / off, device memory back at close();
6. iter_encode and encode_native synchronous against the pipelined executor (runtime/executor.py), one and two
   engine calls in flight, on one warm runtime: texts/s, stage seconds, outputs identical or not.
--parts picks among engine (1-3), runtime (4), streaming (5), pipelined (6); default all. Only `pipelined`
needs only the fp16 artifact (prepare --artifacts fp16).
Writes gpu-<card>.json / .md to --out; the table prints last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

GRID = [(1, 128), (1, 512), (32, 128), (32, 512)]
GOALS = {"1x128": 2.0, "32x512": 1.2}  # onnxruntime-cuda over pytorch-fp16 (the goals)
PARTS = frozenset({"engine", "runtime", "streaming", "pipelined"})  # what `run --parts` can pick
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# --- prepare (CPU) -----------------------------------------------------------------------------------


def prepare(work: Path, shape: str, only: set[str] | None = None) -> None:
    from m3rt.testing.tiny_model import BGE_M3_SHAPE, build_tiny_model

    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "model"
    if not (model_dir / "config.json").is_file():
        build_tiny_model(model_dir, **(BGE_M3_SHAPE if shape == "bge-m3" else {}))
        log(f"built the {shape}-shape random model in {model_dir}")
    # One after another: three exports at once on 16 cores took 261 s against 153 s for the first two alone.
    for name, precision, attention in ARTIFACTS:
        if (only is None or name in only) and not (work / name / "manifest.json").is_file():
            log(f"exported {name}: {_export_one((model_dir, work / name, precision, attention))}")


ARTIFACTS = [("fp32", "fp32", "fused"), ("fp16", "fp16", "fused"), ("fp16-standard", "fp16", "standard")]


def _export_one(job) -> str:
    from m3rt.export import export

    model_dir, out, precision, attention = job
    export(model_dir, out, precision=precision, attention=attention, enforce_fidelity=False, overwrite=True)
    report = json.loads((out / "manifest.json").read_text())["validation"]
    return json.dumps(report.get(precision, report["outputs"]))


# --- run (GPU) ---------------------------------------------------------------------------------------


def run(work: Path, out: Path, budget_s: float, reps: int, parts: set[str] = PARTS) -> None:
    import torch  # first: it loads the CUDA 13 / cuDNN 9 libraries onnxruntime-gpu links against

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: nothing to benchmark")
    deadline = T0 + budget_s
    card = torch.cuda.get_device_name(0)
    from m3rt.artifact import OUTPUT_NAMES, read_manifest

    model_dir, fp32_dir, fp16_dir = work / "model", work / "fp32", work / "fp16"
    cfg = json.loads((model_dir / "config.json").read_text())
    fp16_manifest = read_manifest(fp16_dir, verify=False)
    fp32_manifest = read_manifest(fp32_dir, verify=False) if (fp32_dir / "manifest.json").is_file() else None
    from m3rt.bench.harness import run_record

    record = run_record(("m3rt", "torch", "onnxruntime", "onnxruntime-gpu", "transformers", "numpy"))
    result: dict = {
        "date": record["date"], "card": card, "commit": record["git_commit"] or "",
        "platform": record["machine"]["platform"], "host": record["machine"], "versions": record["versions"],
        "shape": f"{cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, vocab {cfg['vocab_size']}",
        "torch": torch.__version__, "rows": {}, "skipped": {}, "fidelity": [], "notes": [],
        "parts": sorted(parts),
    }
    try:
        import onnxruntime as ort

        result["onnxruntime"] = f"{ort.__version__} {ort.get_available_providers()}"
    except ImportError as e:
        result["onnxruntime"] = f"missing ({e})"
    log(f"{card}; torch {torch.__version__}; onnxruntime {result['onnxruntime']}")
    engine = None
    # 1-3. The engine against PyTorch, fidelity (parts: "engine"; it loads the PyTorch model and the fp32 graph).
    if "engine" in parts:
        result["matmul_fp16_tflops"] = _matmul_rate(torch)
        log(f"fp16 matmul {result['matmul_fp16_tflops']:.0f} TFLOP/s")

        rng = np.random.default_rng(0)
        inputs = {(b, s): _random_batch(rng, b, s, cfg["vocab_size"]) for b, s in GRID}

        # 1. PyTorch fp16 eager SDPA: the baseline.
        from m3rt.export.torch_model import load_m3_graph

        model = load_m3_graph(model_dir, attention="sdpa").half().cuda().eval()

        def torch_run(ids, mask):
            with torch.inference_mode():
                outs = model(torch.from_numpy(ids).cuda(), torch.from_numpy(mask).cuda())
                return dict(zip(OUTPUT_NAMES, (o.float().cpu().numpy() for o in outs)))

        result["rows"]["pytorch-fp16"] = _time_grid(torch_run, inputs, reps)
        log(f"pytorch-fp16 {result['rows']['pytorch-fp16']}")

        # 2. onnxruntime CUDA: m3rt's engine (buffers bound per shape), a new binding per call, and
        #    onnxruntime's CUDA graphs, which need a graph without control flow: the standard-attention artifact.
        engine = ref_session = None
        try:
            from m3rt.runtime.backends import create_engine
            from m3rt.runtime.config import RuntimeConfig

            engine = create_engine("onnxruntime-cuda", fp16_manifest, RuntimeConfig(backend="onnxruntime-cuda"))
            result["rows"]["onnxruntime-cuda"] = _time_grid(lambda i, m: engine.run(i, m, OUTPUT_NAMES), inputs, reps)
            log(f"onnxruntime-cuda {result['rows']['onnxruntime-cuda']}")
            result["rows"]["onnxruntime-cuda-unbound"] = _time_grid(
                lambda i, m: engine._run_unbound({"input_ids": i, "attention_mask": m}, OUTPUT_NAMES), inputs, reps)
            log(f"onnxruntime-cuda-unbound {result['rows']['onnxruntime-cuda-unbound']}")
            # The bound path must return what a fresh binding returns, bit for bit, on fresh inputs of a bound shape.
            diffs = {}
            for (b, s), _ in inputs.items():
                ids, mask = _random_batch(rng, b, s, cfg["vocab_size"])
                got = engine.run(ids, mask, OUTPUT_NAMES)
                want = engine._run_unbound({"input_ids": ids, "attention_mask": mask}, OUTPUT_NAMES)
                diffs[f"{b}x{s}"] = max(float(np.abs(got[n] - want[n]).max()) for n in OUTPUT_NAMES)
            first = engine.run(ids, mask, OUTPUT_NAMES)
            kept = {n: v.copy() for n, v in first.items()}
            engine.run(ids[:, ::-1].copy(), mask, OUTPUT_NAMES)  # same shape, other ids: the buffers change
            diffs["earlier result unchanged"] = all(np.array_equal(first[n], kept[n]) for n in OUTPUT_NAMES)
            result["bound_vs_unbound_max_abs_diff"] = diffs
            log(f"bound vs unbound max abs diff {diffs}")
        except Exception as e:  # noqa: BLE001 - every later part still runs and says why this one did not
            result["skipped"]["onnxruntime-cuda"] = f"{type(e).__name__}: {e}"
            log(f"onnxruntime-cuda skipped: {e}")
        std_dir = work / "fp16-standard"
        if engine is not None and (std_dir / "manifest.json").is_file():
            std_manifest = read_manifest(std_dir, verify=False)
            for name, run_one in (
                    ("onnxruntime-cuda-standard", lambda: _time_grid(
                        lambda i, m, e=create_engine("onnxruntime-cuda", std_manifest, RuntimeConfig(
                            backend="onnxruntime-cuda")): e.run(i, m, OUTPUT_NAMES), inputs, reps)),
                    ("onnxruntime-cuda-graph-standard", lambda: _time_cuda_graph(std_manifest, inputs, reps, cfg))):
                if time.monotonic() > deadline - 90:
                    result["skipped"][name] = "out of time budget"
                    continue
                try:
                    result["rows"][name] = run_one()
                    log(f"{name} {result['rows'][name]}")
                except Exception as e:  # noqa: BLE001
                    result["skipped"][name] = f"{type(e).__name__}: {str(e)[:300]}"
                    log(f"{name} skipped: {e}")

        # 3. Fidelity and overflow, against the fp32 graph on the GPU.
        if engine is not None:
            try:
                ref_session = _fp32_session(fp32_manifest)
                result["fidelity"] = _fidelity(engine, ref_session, torch_run, fp16_manifest, cfg, rng, deadline)
            except Exception as e:  # noqa: BLE001
                result["skipped"]["fidelity"] = f"{type(e).__name__}: {e}"
                log(f"fidelity skipped: {e}")
        del model
        torch.cuda.empty_cache()

    if "engine" not in parts:  # the CUDA provider itself says whether the runtime parts can run
        from m3rt.runtime.ort_cuda import OrtCudaEngine

        result["matmul_fp16_tflops"] = None
        cuda_ok = OrtCudaEngine.missing() is None
    else:
        cuda_ok = engine is not None

    # 4. The runtime end to end on the GPU.
    if "runtime" in parts and cuda_ok and time.monotonic() < deadline - 30:
        try:
            result["runtime"] = _runtime_end_to_end(fp16_dir, fp32_dir)
            log(f"runtime {result['runtime']}")
        except Exception as e:  # noqa: BLE001
            result["skipped"]["runtime"] = f"{type(e).__name__}: {e}"

    # 5. iter_encode on the GPU: streamed outputs, tokenize overlap on / off, memory back at close().
    if "streaming" in parts and cuda_ok and time.monotonic() < deadline - 40:
        try:
            result["streaming"] = _runtime_streaming(fp16_dir, "onnxruntime-cuda", 4000, 2,
                                                     lambda: torch.cuda.mem_get_info()[0])
            log(f"streaming {result['streaming']}")
        except Exception as e:  # noqa: BLE001
            result["skipped"]["streaming"] = f"{type(e).__name__}: {e}"
            log(f"streaming skipped: {e}")

    # 6. The pipelined executor against the synchronous path, on one warm runtime.
    if "pipelined" in parts and cuda_ok and time.monotonic() < deadline - 40:
        try:
            result["pipelined"] = _runtime_pipelined(fp16_dir, "onnxruntime-cuda", 4000, 2, deadline - 10)
            log(f"pipelined {json.dumps(result['pipelined'], default=str)}")
        except Exception as e:  # noqa: BLE001
            result["skipped"]["pipelined"] = f"{type(e).__name__}: {e}"
            log(f"pipelined skipped: {e}")

    result["batch32x512_tflops"] = {k: _model_flops(cfg, 32, 512) / v["32x512"] / 1e12
                                    for k, v in result["rows"].items() if "32x512" in v}
    result["elapsed_s"] = time.monotonic() - T0
    out.mkdir(parents=True, exist_ok=True)
    tag = card.replace(" ", "-").lower()
    (out / f"gpu-{tag}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = _table(result)
    (out / f"gpu-{tag}.md").write_text(table + "\n")
    print(table)


def _random_batch(rng, b: int, s: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(5, vocab, (b, s)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 0, 2
    return ids, np.ones_like(ids)


def _time_grid(run, inputs, reps: int) -> dict[str, float]:
    from m3rt.bench.harness import time_calls

    times = {}
    for (b, s), (ids, mask) in inputs.items():
        # 3 warm-up calls: kernel selection, allocator growth. run() returns host arrays: the copies back are
        # in the time, so it is synchronised.
        samples = time_calls(lambda: run(ids, mask), reps, warmup=3)
        times[f"{b}x{s}"] = statistics.median(samples)
    return times


def _time_cuda_graph(manifest, inputs, reps: int, cfg: dict) -> dict[str, float]:
    """onnxruntime's CUDA graph capture over the engine's bound buffers (runtime/ort_cuda.py _BoundShape)."""
    import onnxruntime as ort

    from m3rt.runtime.config import RuntimeConfig
    from m3rt.runtime.ort_session import session_options
    from m3rt.runtime.ort_cuda import BoundShape

    times = {}
    for (b, s), (ids, mask) in inputs.items():
        # One session per shape: a captured graph is tied to its buffers' addresses and shapes.
        sess = ort.InferenceSession(str(manifest.graph_path), sess_options=session_options(RuntimeConfig()),
                                    providers=[("CUDAExecutionProvider", {"device_id": 0, "enable_cuda_graph": "1"})])
        shapes = {"dense_vecs": (b, cfg["hidden_size"]), "sparse_weights": (b, s),
                  "colbert_vecs": (b, s - 1, cfg["hidden_size"])}
        bound = BoundShape(sess, "cuda", 0, {"input_ids": ids, "attention_mask": mask},
                            {n: np.empty(shape, np.float32) for n, shape in shapes.items()})
        times.update(_time_grid(lambda i, m: bound.run({"input_ids": i, "attention_mask": m}), {(b, s): (ids, mask)},
                                reps))
        del bound, sess
    return times


def _fp32_session(manifest):
    import onnxruntime as ort

    from m3rt.runtime.config import RuntimeConfig
    from m3rt.runtime.ort_session import session_options

    # TF32 off: the reference must be true fp32.
    sess = ort.InferenceSession(str(manifest.graph_path), sess_options=session_options(RuntimeConfig()),
                                providers=[("CUDAExecutionProvider", {"device_id": 0, "use_tf32": "0"})])
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"fp32 reference session fell back to {sess.get_providers()}")
    return sess


def _fidelity(engine, ref_session, torch_run, manifest, cfg, rng, deadline) -> list[dict]:
    from m3rt.artifact import OUTPUT_NAMES
    from m3rt.runtime import fidelity
    from m3rt.runtime.tokenize import TextTokenizer

    tok = TextTokenizer(manifest.tokenizer_path, manifest.pad_id)
    vocab = cfg["vocab_size"]
    cases = {"FIDELITY_TEXTS (12, padded)": fidelity.fidelity_batch(tok, manifest.max_length)}
    cases["random 32 x 512"] = _random_batch(rng, 32, 512, vocab)
    lengths = rng.integers(2, 513, 16)
    ids, mask = _random_batch(rng, 16, 512, vocab)
    for row, n in enumerate(lengths):  # padded rows: the masked attention path
        ids[row, n - 1], ids[row, n:], mask[row, n:] = 2, manifest.pad_id, 0
    cases["random 16 x <=512, padded"] = (ids, mask)
    cases["random 1 x 8192"] = _random_batch(rng, 1, 8192, vocab)
    for token in (6, min(1000, vocab - 1)):
        ids = np.full((1, 8192), token, dtype=np.int64)
        ids[0, 0], ids[0, -1] = 0, 2
        cases[f"token {token} x 8192"] = (ids, np.ones_like(ids))
    ids = np.full((8, 512), 7, dtype=np.int64)
    ids[:, 0], ids[:, -1] = 0, 2
    cases["token 7 x 512, batch 8"] = (ids, np.ones_like(ids))
    rows = []
    for name, (ids, mask) in cases.items():
        if time.monotonic() > deadline - 45:
            rows.append(dict(case=name, skipped="out of time budget"))
            continue
        ref = dict(zip(OUTPUT_NAMES, ref_session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask})))
        row = dict(case=name, shape=list(ids.shape))
        for who, run in (("onnxruntime-fp16", lambda: engine.run(ids, mask, OUTPUT_NAMES)),
                         ("pytorch-fp16", lambda: torch_run(ids, mask))):
            t = time.perf_counter()
            got = run()
            elapsed = time.perf_counter() - t
            bad = sum(int((~np.isfinite(v)).sum()) for v in got.values())
            m = fidelity.measure(ref, got, ids, mask, manifest.sparse_skip_ids)
            row[who] = dict(nonfinite=bad, dense_min_cosine=m["dense_min_cosine"],
                            colbert_mean_cosine=m["colbert_mean_cosine"], sparse_max_rel_err=m["sparse_max_rel_err"],
                            seconds_one_call=elapsed)
        log(f"fidelity {name}: {json.dumps({k: v for k, v in row.items() if k != 'case'})}")
        rows.append(row)
    return rows


def _runtime_end_to_end(fp16_dir: Path, fp32_dir: Path) -> dict:
    from m3rt import M3Runtime
    from m3rt.runtime.fidelity import FIDELITY_TEXTS

    texts = FIDELITY_TEXTS * 4
    gpu = M3Runtime(fp16_dir, backend="onnxruntime-cuda")
    cpu = M3Runtime(fp32_dir, backend="onnxruntime-cpu")
    kw = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)
    got, ref = gpu.encode(texts, **kw), cpu.encode(texts, **kw)
    dense = np.sum(got["dense_vecs"] * ref["dense_vecs"], axis=1)
    colbert = [float(np.mean(np.sum(a * b, axis=1))) for a, b in zip(got["colbert_vecs"], ref["colbert_vecs"])]
    same_keys = all(set(a) == set(b) for a, b in zip(got["lexical_weights"], ref["lexical_weights"]))
    corpus = [" ".join(["word"] * int(n)) for n in np.random.default_rng(1).integers(8, 500, 2000)]
    gpu.encode(corpus[:64])
    t = time.perf_counter()
    enc = gpu.encode(corpus, batch_size=256, max_length=512)
    elapsed = time.perf_counter() - t
    tokens = sum(len(ids) for ids in gpu.tokenizer.encode(corpus, 512))
    gpu.close()
    cpu.close()
    return dict(engine=gpu.engine.name, pipelined=gpu._pipelined(), texts=len(texts),
                dense_min_cosine_vs_cpu_fp32=float(dense.min()),
                colbert_min_mean_cosine_vs_cpu_fp32=min(colbert), lexical_keys_equal=same_keys,
                corpus_texts=len(corpus), corpus_seconds=elapsed, corpus_texts_per_s=len(corpus) / elapsed,
                corpus_tokens=tokens, corpus_tokens_per_s=tokens / elapsed, dense_rows=int(len(enc["dense_vecs"])))


def _runtime_streaming(fp16_dir: Path, backend: str, n_texts: int, rounds: int, free_bytes) -> dict:
    """iter_encode on the GPU: its outputs against encode's on the same texts; reading and tokenizing the next
    chunk during the engine's run (overlap_tokenize, on by default for GPU engines) against after it, alternated
    on one warm runtime each; and the device memory close() gives back (free_bytes(): the device's free bytes)."""
    from m3rt import M3Runtime
    from m3rt.runtime.encoded import concat

    rng = np.random.default_rng(2)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    corpus = [" ".join(rng.choice(words, int(n))) for n in rng.integers(8, 500, n_texts)]
    kw = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True, max_length=512)
    free_before = free_bytes()
    # The synchronous path's overlap (pipelined off: the executor always reads ahead; part 6 measures it).
    runtimes = {on: M3Runtime(fp16_dir, backend=backend, overlap_tokenize=on, pipelined=False) for on in (True, False)}
    out: dict = {"backend": backend, "texts": n_texts, "chunk_size": runtimes[True].config.chunk_size}
    whole = runtimes[True].encode_native(corpus, **kw)
    streamed = concat(list(runtimes[True].iter_encode(iter(corpus), **kw)))
    out["stream_vs_encode_dense_min_cosine"] = float(np.min(np.sum(whole.dense * streamed.dense, axis=1)))
    out["stream_vs_encode_colbert_max_abs_diff"] = float(np.abs(whole.colbert.vectors - streamed.colbert.vectors).max())
    out["stream_vs_encode_sparse_same_ids"] = bool(np.array_equal(whole.sparse.token_ids, streamed.sparse.token_ids))
    seconds: dict = {"overlap on": [], "overlap off": []}
    stages: dict = {}
    for _ in range(rounds):
        for on in (True, False):
            t = time.perf_counter()
            chunks = list(runtimes[on].iter_encode(iter(corpus), **kw))
            seconds[f"overlap {'on' if on else 'off'}"].append(time.perf_counter() - t)
            stages[f"overlap {'on' if on else 'off'}"] = concat(chunks).timings
    out["seconds"] = seconds
    out["stage_seconds_last_round"] = stages
    out["texts_per_s_median"] = {k: n_texts / statistics.median(v) for k, v in seconds.items()}
    free_open = free_bytes()
    for rt in runtimes.values():
        rt.close()
    import gc

    gc.collect()
    free_closed = free_bytes()
    out["device_mib"] = dict(held_while_open=(free_before - free_open) / 2**20,
                             still_held_after_close=(free_before - free_closed) / 2**20)
    return out


def _runtime_pipelined(artifact: Path, backend: str, n_texts: int, rounds: int, deadline: float) -> dict:
    """iter_encode (n_texts texts, the default chunks, all three outputs) synchronous, as today (tokenize overlap on),
    against the pipelined executor with one and with two engine calls in flight, alternated on ONE warm runtime
    (config.pipelined and the engine's concurrent_calls switched between runs); then encode_native (the whole
    list as one chunk) both ways. Every variant's outputs against the synchronous run's: the executor's claim
    is "identical". The engine-bound rate is the texts over the synchronous run's engine seconds: what end-to-end
    throughput reaches when the host never makes the engine wait. Runs on any backend (a CPU check of the
    script: backend onnxruntime-cpu on a small artifact)."""
    from dataclasses import replace

    from m3rt import M3Runtime
    from m3rt.runtime.encoded import concat

    rng = np.random.default_rng(2)  # the streaming part's texts: its overlap figures compare with these
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    corpus = [" ".join(rng.choice(words, int(n))) for n in rng.integers(8, 500, n_texts)]
    kw = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True, max_length=512)
    rt = M3Runtime(artifact, backend=backend)
    declared = rt.engine.concurrent_calls
    variants = {"sync": (False, None), "pipelined, 1 call": (True, 1), "pipelined, 2 calls": (True, 2)}

    def use(pipelined: bool, calls: int | None) -> None:
        rt.config = replace(rt.config, pipelined=pipelined)
        rt.engine.concurrent_calls = declared if calls is None else calls  # an instance's own value, for this run

    out: dict = {"backend": rt.engine.name, "texts": n_texts, "chunk_size": rt.config.chunk_size,
                 "declared_concurrent_calls": declared, "host_cpus": os.cpu_count()}
    try:
        for v in variants.values():  # warm-up: kernels and allocator for each variant's batch shapes
            use(*v)
            list(rt.iter_encode(iter(corpus[:1024]), **kw))
        seconds: dict = {name: [] for name in variants}
        stages, outputs = {}, {}
        for r in range(rounds):
            for name, v in variants.items():
                if time.monotonic() > deadline - 20:
                    out.setdefault("notes", []).append(f"round {r + 1} {name}: out of time budget")
                    continue
                use(*v)
                t = time.perf_counter()
                chunks = list(rt.iter_encode(iter(corpus), **kw))
                seconds[name].append(time.perf_counter() - t)
                enc = concat(chunks)
                stages[name] = enc.timings
                outputs.setdefault(name, enc)
        out["iter_encode_seconds"] = seconds
        out["iter_encode_texts_per_s_median"] = {k: n_texts / statistics.median(v) for k, v in seconds.items() if v}
        out["iter_encode_stage_seconds_last_round"] = stages
        if stages.get("sync", {}).get("engine"):
            out["engine_bound_texts_per_s"] = n_texts / stages["sync"]["engine"]
        out["iter_encode_vs_sync"] = {k: _same_outputs(outputs["sync"], e) for k, e in outputs.items() if k != "sync"}
        whole = {}
        for name, v in (("sync", (False, None)), ("pipelined", (True, None))):
            if time.monotonic() > deadline - 15:
                out.setdefault("notes", []).append(f"encode_native {name}: out of time budget")
                continue
            use(*v)
            t = time.perf_counter()
            whole[name] = rt.encode_native(corpus, **kw)
            out.setdefault("encode_native_seconds", {})[name] = time.perf_counter() - t
            out.setdefault("encode_native_stage_seconds", {})[name] = whole[name].timings
        if len(whole) == 2:
            out["encode_native_vs_sync"] = _same_outputs(whole["sync"], whole["pipelined"])
    finally:
        rt.close()
    return out


def _same_outputs(a, b) -> dict:
    """Whether two Encoded of the same texts are identical, and by how much they differ where not."""
    return dict(identical=bool(np.array_equal(a.dense, b.dense) and np.array_equal(a.colbert.vectors, b.colbert.vectors)
                               and np.array_equal(a.sparse.indptr, b.sparse.indptr)
                               and np.array_equal(a.sparse.token_ids, b.sparse.token_ids)
                               and np.array_equal(a.sparse.weights, b.sparse.weights)),
                dense_max_abs_diff=float(np.abs(a.dense - b.dense).max()) if len(a.dense) else 0.0,
                colbert_max_abs_diff=float(np.abs(a.colbert.vectors - b.colbert.vectors).max())
                if a.colbert.vectors.shape == b.colbert.vectors.shape and len(a.colbert.vectors) else None)


def _matmul_rate(torch) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (start.elapsed_time(end) / 1e3) / 1e12


def _model_flops(cfg: dict, batch: int, seq: int) -> float:
    h, ffn, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    tokens = batch * seq
    dense = 2 * tokens * (4 * h * h + 2 * h * ffn) * layers
    attention = 4 * batch * seq * seq * h * layers
    return dense + attention + 2 * tokens * h * h  # + the colbert head


def _table(r: dict) -> str:
    head = (f"GPU {r['card']}, {r['date']}, commit {r['commit']}, model {r['shape']} (random weights), "
            f"torch {r['torch']}, onnxruntime {r['onnxruntime']}, parts {','.join(r['parts'])}")
    if "pytorch-fp16" not in r["rows"]:  # the engine part was not run (or failed before its baseline)
        return "\n".join([head, *_runtime_lines(r)])
    base = r["rows"]["pytorch-fp16"]
    lines = [head + f", fp16 matmul {r['matmul_fp16_tflops']:.0f} TFLOP/s (measured)", "",
             "Latency, host ids in, three outputs on the host (median; ratio = pytorch-fp16 / row):", "",
             "| backend | " + " | ".join(f"b{k.replace('x', ' x ')}" for k in base) + " | b32x512 TFLOP/s |",
             "|---" * (len(base) + 2) + "|"]
    for name, row in r["rows"].items():
        cells = [f"{row[k] * 1e3:.2f} ms ({base[k] / row[k]:.2f}x)" if k in row else "-" for k in base]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['batch32x512_tflops'].get(name, 0):.0f} |")
    for name, why in r["skipped"].items():
        lines.append(f"| {name} | skipped: {why} |")
    ort_row = r["rows"].get("onnxruntime-cuda")
    if ort_row:
        lines += ["", "Goals: " + ", ".join(f"{k}: {base[k] / ort_row[k]:.2f}x (goal {g}x, "
                                               f"{'met' if base[k] / ort_row[k] >= g else 'NOT met'})"
                                               for k, g in GOALS.items())]
    if r.get("bound_vs_unbound_max_abs_diff"):
        lines += ["", f"onnxruntime-cuda bound buffers against a fresh binding, fresh inputs: "
                      f"{json.dumps(r['bound_vs_unbound_max_abs_diff'])}"]
    if r["fidelity"]:
        lines += ["", "fp16 against the fp32 graph (onnxruntime CUDA, TF32 off):", "",
                  "| input | who | non-finite | dense min cos | colbert mean cos | sparse max rel err | one call |",
                  "|---|---|---|---|---|---|---|"]
        for row in r["fidelity"]:
            if "skipped" in row:
                lines.append(f"| {row['case']} | skipped: {row['skipped']} |")
                continue
            for who in ("onnxruntime-fp16", "pytorch-fp16"):
                m = row[who]
                lines.append(f"| {row['case']} | {who} | {m['nonfinite']} | {m['dense_min_cosine']:.6f} | "
                             f"{m['colbert_mean_cosine']:.6f} | {m['sparse_max_rel_err']:.4f} | "
                             f"{m['seconds_one_call'] * 1e3:.1f} ms |")
    return "\n".join(lines + _runtime_lines(r))


def _runtime_lines(r: dict) -> list[str]:
    lines = [f"| {name} | skipped: {why} |" for name, why in r["skipped"].items()
             if "pytorch-fp16" not in r["rows"]]
    if r.get("runtime"):
        lines += ["", f"M3Runtime on the GPU: {json.dumps(r['runtime'])}"]
    if r.get("streaming"):
        st = r["streaming"]
        lines += ["", f"iter_encode on the GPU, {st['texts']} texts: "
                  + ", ".join(f"{k} {v:.0f} texts/s" for k, v in st["texts_per_s_median"].items())
                  + f"; vs encode: dense min cos {st['stream_vs_encode_dense_min_cosine']:.6f}; "
                  f"device MiB held open / after close: {st['device_mib']}"]
    if r.get("pipelined"):
        pl = r["pipelined"]
        lines += ["", f"iter_encode synchronous vs pipelined ({pl['backend']}, {pl['texts']} texts, chunks of "
                      f"{pl['chunk_size']}; engine-bound rate {pl.get('engine_bound_texts_per_s', 0):.0f} texts/s):", "",
                  "| variant | texts/s (median) | tokenize s | plan s | engine s | heads s | outputs vs sync |",
                  "|---|---|---|---|---|---|---|"]
        for name, rate in pl.get("iter_encode_texts_per_s_median", {}).items():
            st = pl["iter_encode_stage_seconds_last_round"].get(name, {})
            same = pl["iter_encode_vs_sync"].get(name)
            verdict = "(reference)" if name == "sync" else "not compared" if same is None else (
                "identical" if same["identical"] else json.dumps(same))
            lines.append(f"| {name} | {rate:.0f} | " + " | ".join(f"{st.get(k, 0):.2f}" for k in
                                                                  ("tokenize", "plan", "engine", "heads"))
                         + f" | {verdict} |")
        if pl.get("encode_native_seconds"):
            lines += ["", "encode_native (one chunk): " + ", ".join(
                f"{k} {pl['texts'] / v:.0f} texts/s" for k, v in pl["encode_native_seconds"].items())
                + f"; pipelined vs sync: {json.dumps(pl.get('encode_native_vs_sync'))}"]
        for note in pl.get("notes", []):
            lines.append(f"- {note}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--shape", choices=["bge-m3", "tiny"], default="bge-m3")
    p.add_argument("--artifacts", default="all", help="comma list of " + ", ".join(a[0] for a in ARTIFACTS))
    r = sub.add_parser("run")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/results")))
    r.add_argument("--budget-s", type=float, default=240.0)
    r.add_argument("--reps", type=int, default=20)
    r.add_argument("--parts", default="all", help="comma list of " + ", ".join(sorted(PARTS)))
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.work, args.shape, None if args.artifacts == "all" else set(args.artifacts.split(",")))
    else:
        parts = PARTS if args.parts == "all" else set(args.parts.split(","))
        if parts - PARTS:
            ap.error(f"unknown parts {sorted(parts - PARTS)}; known: {sorted(PARTS)}")
        run(args.work, args.out, args.budget_s, args.reps, parts)


if __name__ == "__main__":
    main()
