"""Cold start: a new process imports m3rt, loads an artifact and encodes one text; how long until ready.

`python -m m3rt.bench.cold_start ARTIFACT` prints one JSON line (the child of `measure`). The first load on a
machine hashes every file; later ones trust the verified-once record (artifact.VerifiedRecord), so both are
reported: `first` after the artifact's record is removed, `warm` the median of the next `reps` processes.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path


def measure(artifact: str | Path, reps: int = 3, backend: str = "cpu") -> dict:
    """Seconds to import, load and first-encode in fresh processes (the disk cache warm, as on a server)."""
    from m3rt.artifact import MANIFEST, VerifiedRecord

    record = VerifiedRecord(Path(artifact), Path(artifact) / MANIFEST).path
    record.unlink(missing_ok=True)
    runs = [_child(artifact, backend) for _ in range(1 + reps)]
    first, warm = runs[0], runs[1:]
    return {"first": first, "warm": {k: statistics.median(r[k] for r in warm) for k in first}, "reps": reps}


def _child(artifact, backend: str) -> dict:
    from m3rt.bench.harness import in_fresh_process

    return in_fresh_process("m3rt.bench.cold_start", str(artifact), backend, timeout=600)


def main(artifact: str, backend: str) -> None:
    t0 = time.perf_counter()
    from m3rt import M3Runtime

    t1 = time.perf_counter()
    rt = M3Runtime(artifact, backend=backend)
    t2 = time.perf_counter()
    rt.encode(["hello world"])
    t3 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_encode_s": t3 - t2, "ready_s": t3 - t0}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cpu")
