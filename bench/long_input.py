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
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
from pathlib import Path
from m3rt.bench.backends import make_backend
from m3rt.bench.texts import ExactLengthTexts
from m3rt.runtime.tokenize import TextTokenizer
from m3rt.artifact import read_manifest

name, work, tokens = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
manifest = read_manifest(work / "artifact-fp32", verify=False)
maker = ExactLengthTexts(TextTokenizer(manifest.tokenizer_path, manifest.pad_id), manifest.max_length)
text = maker.texts([tokens], np.random.default_rng(0))
artifacts = {"m3rt-fp32": work / "artifact-fp32", "m3rt-int8": work / "artifact-int8"}
backend = make_backend(name, work / "model", artifacts, 0)
loaded = rss_mb()
t = time.perf_counter()
out = backend.encode(text, batch_size=1, max_length=tokens)
seconds = time.perf_counter() - t
assert out["colbert_vecs"][0].shape[0] == tokens - 1
print(json.dumps({"backend": name, "tokens": tokens, "seconds": seconds, "rss_after_load_mb": loaded,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--backends", default="pytorch,m3rt-fp32,m3rt-int8")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from m3rt.bench import machine

    rows = []
    for name in args.backends.split(","):
        print(f"{name}: encoding one {args.tokens}-token text in a fresh process ...", file=sys.stderr, flush=True)
        res = subprocess.run([sys.executable, "-c", CHILD, name, args.work_dir, str(args.tokens)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            rows.append({"backend": name, "tokens": args.tokens, "error": res.stderr.strip().splitlines()[-1]})
        else:
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    result = {"date": machine.utc_now(), "git_commit": machine.git_commit(), "machine": machine.machine_info(),
              "versions": machine.versions(), "work_dir": args.work_dir, "rows": rows}
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
