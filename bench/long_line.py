"""One very long line through `m3rt encode` (what a user's corpus with a runaway record sends): wall time and peak
RSS of the whole CLI process, against an idle run (one short text) of the same CLI, alternated, each in a fresh
process. The cost should follow max_length, not the line's size (runtime/windows.py).

    python bench/long_line.py --artifact tests/data/tiny-artifact --mb 50 --runs 5 --out bench/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["search", "ranking", "retrieval", "lobo", "renard", "北京", "函数", "the", "BM25", "Быстрая", "الثعلب"]


# The CLI, reporting its own peak RSS (VmHWM, reset at exec: a forked child's ru_maxrss would carry the parent's).
WITH_PEAK = ("import sys; from m3rt.cli import main; rc = main(sys.argv[2:]); "
             "open(sys.argv[1], 'w').write(next(l.split()[1] for l in open('/proc/self/status') "
             "if l.startswith('VmHWM'))); sys.exit(rc)")


def cli_run(args: list[str], tmp: str) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one `m3rt` process."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", WITH_PEAK, f"{tmp}/peak", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.decode()[-2000:])
    return time.perf_counter() - t, int(Path(f"{tmp}/peak").read_text()) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artifact", default="tests/data/tiny-artifact")
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np

    from m3rt.bench import harness

    with tempfile.TemporaryDirectory() as tmp:
        line = Path(tmp) / "line.txt"
        words = np.random.default_rng(0).choice(WORDS, args.mb * 200_000)
        line.write_text(" ".join(words.tolist())[:args.mb * 1_000_000] + "\n")
        idle, big = [], []
        for _ in range(args.runs):  # alternated: the machine's noise falls on both alike
            idle.append(cli_run(["encode", args.artifact, "hi", "--output", f"{tmp}/idle.jsonl", "--overwrite", "-q"],
                                tmp))
            big.append(cli_run(["encode", args.artifact, "--input", str(line), "--output", f"{tmp}/big.jsonl",
                                "--overwrite", "-q"], tmp))
    med = {name: (statistics.median(t for t, _ in runs), statistics.median(m for _, m in runs))
           for name, runs in (("idle", idle), ("line", big))}
    result = {**harness.run_record(), "artifact": args.artifact, "line_mb": args.mb, "runs": args.runs,
              "idle": idle, "line": big, "median": med}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "long-line.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [f"# One {args.mb} MB line through `m3rt encode` (max_length 512), against an idle run",
             "", f"- {result['date']}, commit {result['git_commit']}, {m.get('cpu')} (class {m.get('cpu_class')}), "
             f"{m.get('cores')} cores; artifact {args.artifact}; {args.runs} alternated runs, medians",
             "- whole CLI processes (start-up, artifact load, reading the line, encoding, writing); peak RSS is the "
             "process's high-water mark", "",
             "| run | seconds | peak RSS |", "|---|---|---|",
             f"| idle (one short text) | {med['idle'][0]:.2f} | {med['idle'][1]:.0f} MiB |",
             f"| {args.mb} MB line | {med['line'][0]:.2f} | {med['line'][1]:.0f} MiB |",
             f"| difference | **{med['line'][0] - med['idle'][0]:.2f}** | **+{med['line'][1] - med['idle'][1]:.0f} MiB** |"]
    (out / "long-line.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
