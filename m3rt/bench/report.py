"""Writing a benchmark result: the JSON as is, a markdown summary, and the batch-1 latency plot."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _threads(n: int) -> str:
    return "default threads" if not n else f"{n} threads"


def markdown(result: dict) -> str:
    m, p, base = result["machine"], result["parameters"], result["baseline"]
    names = p["backends"]
    threads = ", ".join(f"{n} ({_threads(result['threads'][n])})" for n in names)
    lines = [
        f"# m3rt CPU benchmark: {result['name']}",
        "",
        f"{result['date']} · {m['cpu']} (CPU class {m.get('cpu_class', 'not recorded')}"
        f"{', CPUID-masked down to it' if m.get('isa_mask') else ''}), {m['cores']} cores, "
        f"{m['platform']} · commit {result['git_commit']}",
        "",
        f"- model: {result['model_label']}; m3rt, PyTorch and FlagEmbedding compute all three outputs (dense, sparse, "
        "ColBERT), sentence-transformers' backends (st-*) the dense vector only",
        f"- backends: {threads}; baseline: {base}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v),
        *(f"- {note}" for note in result["notes"]),
        "",
        f"## Latency of one encode call (ms; reps = timed calls after a warm-up, up to {p['reps']} "
        f"within {p['time_budget_s']:g} s per backend and point)",
        "",
        f"| batch | tokens | backend | reps | p50 | p90 | p99 | mean | speedup vs {base} (p50) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["latency"]:
        lines.append(f"| {r['batch_size']} | {r['seq_length']} | {r['backend']} | {r['reps']} | {_ms(r['p50_s'])} | "
                     f"{_ms(r['p90_s'])} | {_ms(r['p99_s'])} | {_ms(r['mean_s'])} | {_x(r['speedup_vs_baseline'])} |")
    lines += ["", "## Batch-1 latency vs sequence length (p50, ms)", "",
              "| tokens | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for n in sorted({r["seq_length"] for r in result["sweep"]}):
        cells = {r["backend"]: r for r in result["sweep"] if r["seq_length"] == n}
        lines.append(f"| {n} | " + " | ".join(
            f"{_ms(cells[b]['p50_s'])} ({_x(cells[b]['speedup_vs_baseline'])})" for b in names) + " |")
    c = p["corpus"]
    lines += ["", f"## Corpus throughput ({c['size']} texts of {c['min_tokens']}-{c['max_tokens']} tokens, "
                  f"{result['corpus'][0]['tokens']:,} tokens, one encode call, batch_size {c['batch_size']})", "",
              f"| backend | seconds | texts/s | tokens/s | speedup vs {base} | fidelity vs {base}: dense min cos | "
              "ColBERT mean cos | sparse top-10 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["corpus"]:
        f = r.get("fidelity_vs_baseline", {})
        cells = [f"{f[k]:.5f}" if k in f else "- (dense only)" if k != "dense_min_cosine" else "-"
                 for k in ("dense_min_cosine", "colbert_mean_cosine", "sparse_top10_overlap")]
        lines.append(f"| {r['backend']} | {r['seconds']:.3f} | {r['texts_per_s']:,.1f} | {r['tokens_per_s']:,.0f} | "
                     f"{_x(r['speedup_vs_baseline'])} | " + " | ".join(cells) + " |")
    if result.get("cold_start"):
        lines += ["", "## Cold start (a new process: import m3rt, load the artifact, encode one text)", "",
                  "| backend | first load (hashes every file) s | later loads (verified-once record) s | "
                  "of which load s |", "|---|---:|---:|---:|"]
        for r in result["cold_start"]:
            lines.append(f"| {r['backend']} | {r['first']['ready_s']:.3f} | {r['warm']['ready_s']:.3f} | "
                         f"{r['warm']['load_s']:.3f} |")
    if result["stages"]:
        stages = list(result["stages"][0]["seconds"])
        lines += ["", "## Where m3rt's time goes (the corpus, stage timings recorded by the runtime's pipeline)", "",
                  "| backend | " + " | ".join(stages) + " | total s | encode call s |",
                  "|---|" + "---:|" * (len(stages) + 2)]
        for r in result["stages"]:
            cells = [f"{r['seconds'][s]:.3f} s ({100 * r['share'][s]:.1f}%)" for s in stages]
            lines.append(f"| {r['backend']} | " + " | ".join(cells) + f" | {r['total_s']:.3f} | {r['encode_s']:.3f} |")
    return "\n".join(lines) + "\n"


def plot_sweep(result: dict, path: Path) -> None:
    """p50 latency at batch 1 against tokens, one line per backend, log-log (Agg: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in result["parameters"]["backends"]:
        rows = sorted((r for r in result["sweep"] if r["backend"] == name), key=lambda r: r["seq_length"])
        ax.plot([r["seq_length"] for r in rows], [1000 * r["p50_s"] for r in rows], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("p50 latency of one encode call (ms)")
    ax.set_title(f"batch 1, all three outputs: {result['model_label']}\n{result['machine']['cpu']}, "
                 f"{result['machine']['cores']} cores", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
