"""One long text through one backend, in the process that runs this module (bench/long_input.py starts one per
backend): `python -m m3rt.bench.long_input BACKEND WORK_DIR TOKENS` prints a JSON line with the wall time,
the RSS after loading and the peak RSS (the process's high-water mark, loading included)."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(name: str, work: Path, tokens: int) -> dict:
    from m3rt.artifact import read_manifest
    from m3rt.bench.backends import make_backend
    from m3rt.bench.texts import ExactLengthTexts
    from m3rt.runtime.tokenize import TextTokenizer

    manifest = read_manifest(work / "artifact-fp32", verify=False)
    text = ExactLengthTexts(TextTokenizer.from_manifest(manifest), manifest.max_length).texts(
        [tokens], np.random.default_rng(0))
    artifacts = {"m3rt-fp32": work / "artifact-fp32", "m3rt-int8": work / "artifact-int8"}
    backend = make_backend(name, work / "model", artifacts, 0)
    loaded = rss_mb()
    t = time.perf_counter()
    out = backend.encode(text, batch_size=1, max_length=tokens)
    seconds = time.perf_counter() - t
    if out["colbert_vecs"][0].shape[0] != tokens - 1:
        raise RuntimeError(f"{name} returned {out['colbert_vecs'][0].shape[0]} ColBERT vectors, expected {tokens - 1}")
    return {"backend": name, "tokens": tokens, "seconds": seconds, "rss_after_load_mb": loaded,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))))
