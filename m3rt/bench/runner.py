"""run_bench(): prepare the model and artifacts, build the inputs, time every backend, write the report."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np

from m3rt.bench import cold_start, machine, report
from m3rt.bench.backends import M3RT_PRECISION, check_installed, make_backend
from m3rt.bench.models import default_work_dir, prepare_artifact, prepare_model
from m3rt.bench.options import BenchOptions
from m3rt.bench.stages import stage_split
from m3rt.bench.texts import ExactLengthTexts
from m3rt.bench.timing import fidelity_to, measure_corpus, measure_point

log = logging.getLogger("m3rt.bench")


class _Counter:
    """measure_* report each call with update(n); the caller's callback gets (done, total)."""

    def __init__(self, total: int, callback):
        self.total, self.done, self.callback = total, 0, callback

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


def run_bench(options: BenchOptions | None = None, *, progress=None, **keywords) -> dict:
    """Time FlagEmbedding and m3rt's CPU backends on the same inputs; write <out>/<name>.{json,md,png}.

    The keywords are BenchOptions' fields (or pass one BenchOptions). preset: "tiny" (a few-MB TEST model,
    seconds; the default without `model`) or "bge-m3-random" (the real bge-m3 shape with random weights,
    ~2.3 GB). model: a local BAAI/bge-m3-layout directory instead. Models and artifacts are cached in work_dir
    (default ~/.cache/m3rt/bench/<preset>). The first backend is the baseline of every speedup (its p50 / the
    backend's p50). reps: timed calls per backend and grid or sweep point, each backend's calls back to back
    after a warm-up; time_budget_s stops a backend's calls at a point early (after at least one); rows record
    the calls made. threads: torch and onnxruntime intra-op threads; 0 leaves each library's default.
    progress: called as progress(calls done, calls in all). Returns the dict written to <name>.json; the
    markdown summary is <name>.md (result["files"]["md"]).
    """
    if options is not None and keywords:
        raise TypeError("give a BenchOptions or keywords, not both")
    o = options or BenchOptions(**keywords)
    preset, model, out, work_dir, backends = o.preset if o.model is None else None, o.model, o.out, o.work_dir, o.backends
    batch_sizes, seq_lengths, sweep_lengths = list(o.batch_sizes), list(o.seq_lengths), list(o.sweep_lengths)
    corpus_size, corpus_min_tokens, corpus_max_tokens = o.corpus_size, o.corpus_min_tokens, o.corpus_max_tokens
    corpus_batch_size, reps, time_budget_s, threads, seed, name = (o.corpus_batch_size, o.reps, o.time_budget_s,
                                                                   o.threads, o.seed, o.name)
    check_installed(backends)
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("m3rt bench needs matplotlib for the latency plot")

    out = Path(out)
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(preset, model)
    work_dir.mkdir(parents=True, exist_ok=True)
    model_dir = prepare_model(preset, model, work_dir)
    artifacts = {b: prepare_artifact(model_dir, work_dir, M3RT_PRECISION[b], random_weights=model is None)
                 for b in backends if b in M3RT_PRECISION}

    config = json.loads((model_dir / "config.json").read_text())
    hidden = int(config["hidden_size"])
    tokenizer, max_tokens = _tokenizer(model_dir, config, artifacts)
    longest = max(*seq_lengths, *sweep_lengths, corpus_max_tokens)
    if longest > max_tokens:
        raise ValueError(f"{longest} tokens asked for, above the model's limit of {max_tokens}")
    maker = ExactLengthTexts(tokenizer, max_tokens)
    # One generator per input set, seeded by what it is for: a point's texts do not depend on the others.
    grid_texts = {(b, n): maker.texts([n] * b, np.random.default_rng([seed, b, n]))
                  for b in batch_sizes for n in seq_lengths}
    sweep_todo = [n for n in sweep_lengths if not (1 in batch_sizes and n in seq_lengths)]
    sweep_texts = {n: maker.texts([n], np.random.default_rng([seed, 1, n])) for n in sweep_todo}
    corpus_lengths = np.random.default_rng([seed, 0, 0]).integers(corpus_min_tokens, corpus_max_tokens + 1,
                                                                  size=corpus_size)
    corpus_texts = maker.texts(corpus_lengths, np.random.default_rng([seed, 0, 1]))
    corpus_lengths = corpus_lengths.tolist()

    log.info("loading backends: %s", ", ".join(backends))
    runners = [make_backend(b, model_dir, artifacts, threads, work_dir) for b in backends]
    m3rt_runners = [r for r in runners if r.name in M3RT_PRECISION]
    per_point = len(runners) * (1 + reps)
    total = per_point * (len(grid_texts) + len(sweep_texts)) + 2 * len(runners) + len(m3rt_runners)
    counter = _Counter(total, progress)

    # Which backend goes first rotates from point to point: none always runs on a cold or a warm machine.
    turn = iter(range(len(grid_texts) + len(sweep_texts)))
    latency = []
    for (b, n), texts in grid_texts.items():
        latency += _rows(measure_point(_rotated(runners, next(turn)), texts, b, n, reps, time_budget_s, hidden,
                                       counter), {"batch_size": b, "seq_length": n}, backends)
    sweep = [{**r, "from_grid": True} for r in latency if r["batch_size"] == 1 and r["seq_length"] in sweep_lengths]
    for n, texts in sweep_texts.items():
        sweep += [{**r, "from_grid": False} for r in _rows(
            measure_point(_rotated(runners, next(turn)), texts, 1, n, reps, time_budget_s, hidden, counter),
            {"batch_size": 1, "seq_length": n}, backends)]
    sweep.sort(key=lambda r: (r["seq_length"], backends.index(r["backend"])))

    # max_length = corpus_max_tokens: no text is longer, so nothing is truncated.
    outputs: dict = {}
    corpus = measure_corpus(runners, corpus_texts, corpus_lengths, corpus_batch_size, corpus_max_tokens, hidden,
                            counter, outputs)
    base = corpus[backends[0]]["seconds"]
    corpus_rows = [{"backend": b, "batch_size": corpus_batch_size, "max_length": corpus_max_tokens, **corpus[b],
                    "speedup_vs_baseline": base / corpus[b]["seconds"],
                    "fidelity_vs_baseline": fidelity_to(outputs[backends[0]], outputs[b])} for b in backends]
    del outputs
    stages, cold = [], []
    for r in m3rt_runners:
        split = stage_split(r.runtime, corpus_texts, corpus_batch_size, corpus_max_tokens)
        stages.append({"backend": r.name, **split, "encode_s": corpus[r.name]["seconds"]})
        cold.append({"backend": r.name, **cold_start.measure(artifacts[r.name], backend=r.runtime.engine.name)})
        counter.update(1)

    result = {
        "name": name,
        "date": machine.utc_now(),
        "git_commit": machine.git_commit(),
        "machine": machine.machine_info(),
        "versions": machine.versions(),
        "preset": preset,
        "model_dir": str(model_dir),
        "model_label": f"{preset} preset (TEST model, random weights)" if model is None else str(model_dir),
        "work_dir": str(work_dir),
        "artifacts": {b: str(p) for b, p in artifacts.items()},
        "baseline": backends[0],
        "threads": {r.name: r.threads for r in runners},
        "parameters": {
            "backends": list(backends), "batch_sizes": batch_sizes, "seq_lengths": seq_lengths,
            "sweep_lengths": sweep_lengths, "reps": reps, "time_budget_s": time_budget_s, "threads": threads,
            "seed": seed,
            "corpus": {"size": corpus_size, "min_tokens": corpus_min_tokens, "max_tokens": corpus_max_tokens,
                       "batch_size": corpus_batch_size, "token_lengths": corpus_lengths},
        },
        "notes": _notes(preset, backends),
        "latency": latency,
        "sweep": sweep,
        "corpus": corpus_rows,
        "stages": stages,
        "cold_start": cold,
    }
    out.mkdir(parents=True, exist_ok=True)
    files = {ext: out / f"{name}.{ext}" for ext in ("json", "md", "png")}
    result["files"] = {ext: str(p) for ext, p in files.items()}
    text = report.markdown(result)
    report.plot_sweep(result, files["png"])
    files["md"].write_text(text, encoding="utf-8")
    report.write_json(result, files["json"])
    return result


def _rotated(items: list, shift: int) -> list:
    shift %= len(items)
    return items[shift:] + items[:shift]


def _rows(summaries: dict[str, dict], point: dict, backends: tuple[str, ...]) -> list[dict]:
    base = summaries[backends[0]]["p50_s"]
    return [{**point, "backend": b, **summaries[b], "speedup_vs_baseline": base / summaries[b]["p50_s"]}
            for b in backends]


def _tokenizer(model_dir: Path, config: dict, artifacts: dict[str, Path]):
    """m3rt's tokenizer (the artifact's when there is one) and the model's token limit."""
    from m3rt.artifact import read_manifest
    from m3rt.runtime.tokenize import TextTokenizer

    if artifacts:
        manifest = read_manifest(next(iter(artifacts.values())), verify=False)
        return TextTokenizer.from_manifest(manifest), manifest.max_length
    # FlagEmbedding alone: the model directory's tokenizer, and RoBERTa's usable positions.
    pad = int(config.get("pad_token_id", 1))
    return TextTokenizer.from_model_dir(model_dir, pad), int(config["max_position_embeddings"]) - pad - 1


def _notes(preset: str | None, backends: tuple[str, ...]) -> list[str]:
    notes = ["inputs: texts built word by word to tokenize to exactly N tokens, <s> and </s> included "
             "(checked with m3rt's tokenizer, and by every backend returning N-1 ColBERT vectors per text); "
             "max_length = N"]
    if "pytorch" in backends:
        notes.append("pytorch: the computation FlagEmbedding runs (transformers' fast tokenizer, the model in "
                     "PyTorch eager fp32 with SDPA attention, the same head postprocessing), one forward per "
                     "batch: the conservative baseline")
    if "flagembedding" in backends:
        notes.append("FlagEmbedding's encode runs its first batch twice (a batch-size probe before its loop), "
                     "so a call that fits in one batch runs the model twice; that is the cost its users pay "
                     "and it is timed as is")
    if len(backends) > 1:
        notes.append("each point times its backends one after the other (warm-up, then its calls back to back), "
                     "the order rotating between points: alternating backends call by call timed the switch "
                     "between torch's and onnxruntime's thread pools (up to 2x on 2 cores)")
    if preset is not None:
        notes.append(f"{preset}: a TEST model with random weights; its timings are real, its outputs meaningless")
    return notes
