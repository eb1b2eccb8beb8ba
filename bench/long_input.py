"""One long text (8192 tokens by default) through each backend, each in a fresh process: wall time and
peak RSS (the process's high-water mark, model loading included), plus RSS after loading.

    python bench/long_input.py --work-dir ~/.cache/m3rt/bench/bge-m3-random --out bench/results

The work dir is `m3rt bench`'s cache (model/, artifact-fp32/, artifact-int8/); run `m3rt bench --preset
bge-m3-random` once first. onnxruntime's attention over 8192 tokens, unfused, holds a 4 GiB score matrix
per layer; m3rt's graph runs a tiled kernel for unpadded batches (m3rt/export/attention.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--backends", default="pytorch,m3rt-fp32,m3rt-int8")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from m3rt.bench import harness

    rows = []
    for name in args.backends.split(","):
        print(f"{name}: encoding one {args.tokens}-token text in a fresh process ...", file=sys.stderr, flush=True)
        try:
            rows.append(harness.in_fresh_process("m3rt.bench.long_input", name, args.work_dir, str(args.tokens)))
        except RuntimeError as e:
            rows.append({"backend": name, "tokens": args.tokens, "error": str(e)})
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    result = {**harness.run_record(), "work_dir": args.work_dir, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "long-input.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [f"# One {args.tokens}-token text, batch 1, each backend in a fresh process",
             "", f"- {result['date']}, commit {result['git_commit']}, {m.get('cpu')}, {m.get('cores')} cores",
             "- peak RSS = the process's high-water mark, model loading included", "",
             "| backend | seconds | RSS after load | peak RSS |", "|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | failed: {r['error']} | | |")
        else:
            lines.append(f"| {r['backend']} | {r['seconds']:.1f} | {r['rss_after_load_mb'] / 1024:.2f} GB | "
                         f"{r['peak_rss_mb'] / 1024:.2f} GB |")
    (out / "long-input.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
