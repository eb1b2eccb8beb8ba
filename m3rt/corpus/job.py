"""embed_corpus: every input shard encoded into one Parquet output shard (schema.py), in-process or on Ray.

A shard's output appears whole (written beside it, renamed into place) or not at all, so a rerun after a crash
skips the shards already there (after checking they were written with the same settings) and redoes the rest.
Within a shard every input id is written exactly once: a duplicate id in the input is an error, and on Ray,
where a retried task can hand a batch over twice, the driver keeps the first copy and checks the count.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from m3rt.corpus import schema
from m3rt.corpus.shards import clean_leftovers, input_shards, output_path, read_rows, write_shard

log = logging.getLogger("m3rt.corpus")


def embed_corpus(artifact: str | Path, input: str | Path, *, out: str | Path, ray_address: str | None = None,
                 workers: int = 1, cpus_per_worker: float = 1, gpus_per_worker: float = 0, dense: bool = False, sparse: bool = False,
                 colbert: bool = False, batch_tokens: int | None = None, id_field: str = "id",
                 text_field: str = "text", backend: str = "auto", progress: Callable[[str, int], None] | None = None) -> dict:
    """Encode INPUT (a .jsonl / .parquet file, or a folder of them) into OUT/<shard>.parquet. Without
    ray_address, in this process; with one ("local": a new local Ray instance, "auto": the running cluster,
    "ray://host:port": a remote one), on Ray Data with `workers` actors of `cpus_per_worker` CPUs (and
    `gpus_per_worker` GPUs: a GPU backend) each.
    Outputs: dense when none is chosen.
    progress(shard name, rows written) after every chunk. Returns a summary (shards done / skipped, rows, s)."""
    from m3rt.artifact import fetch_artifact, read_manifest

    outputs = schema.outputs_of(dense, sparse, colbert)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    shards = input_shards(input)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in clean_leftovers(out):
        log.info("removed %s, left by an interrupted run", p)
    # An http(s) artifact is fetched once into this machine's cache (workers on other nodes fetch their own).
    local = fetch_artifact(artifact) if _is_url(artifact) else Path(artifact)
    settings = schema.settings_for(read_manifest(local, verify="once"), outputs)
    todo, skipped = [], []
    for shard in shards:
        final = output_path(out, shard)
        if final.exists():
            had = schema.settings_of(final)
            if had != settings:
                raise ValueError(f"{final} exists and was written with other settings ({had}); this job's are "
                                 f"{settings}: use another --out, or remove it to redo that shard")
            skipped.append(shard.name)
        else:
            todo.append(shard)
    started, rows = time.perf_counter(), 0
    if ray_address is None:
        rows = _in_process(local, todo, out, outputs, settings, batch_tokens, id_field, text_field, backend,
                           progress)
    else:
        from m3rt.ray.data import embed_shards

        rows = embed_shards(artifact, todo, out, ray_address=ray_address, workers=workers,
                            cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, outputs=outputs,
                            batch_tokens=batch_tokens, id_field=id_field, text_field=text_field, backend=backend,
                            progress=progress)
    return {"shards_done": [s.name for s in todo], "shards_skipped": skipped, "rows": rows,
            "seconds": time.perf_counter() - started, "out": str(out), "outputs": list(outputs)}


def _in_process(artifact, shards, out, outputs, settings, batch_tokens, id_field, text_field, backend,
                progress) -> int:
    from m3rt import M3Runtime

    total = 0
    with M3Runtime(artifact, backend=backend, max_batch_tokens=batch_tokens) as rt:
        returns = schema.encode_flags(outputs)
        for shard in shards:
            pending: deque = deque()
            seen: set = set()

            def texts(shard=shard, pending=pending, seen=seen):
                for batch in read_rows(shard, id_field, text_field):
                    for row_id, text in batch:
                        if row_id in seen:
                            raise ValueError(f"{shard}: id {row_id!r} appears twice")
                        seen.add(row_id)
                        pending.append(row_id)
                        yield text

            tables = (schema.to_table([pending.popleft() for _ in range(len(enc))], enc, settings)
                      for enc in rt.iter_encode(texts(), **returns))
            rows = write_shard(output_path(out, shard), tables, settings,
                               None if progress is None else lambda n, name=shard.name: progress(name, n))
            total += rows
            log.info("%s: %d rows -> %s", shard.name, rows, output_path(out, shard))
    return total


def _is_url(artifact) -> bool:
    return isinstance(artifact, str) and artifact.startswith(("http://", "https://"))
