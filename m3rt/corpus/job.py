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
from dataclasses import dataclass, replace
from pathlib import Path

from m3rt.artifact import read_manifest, resolve_artifact
from m3rt.corpus import schema
from m3rt.corpus.shards import clean_leftovers, input_shards, output_path, read_rows, write_shard
from m3rt.corpus.writers import require_pyarrow
from m3rt.locking import exclusive_lock
from m3rt.options import option
from m3rt.runtime.outputs import Outputs

log = logging.getLogger("m3rt.corpus")


@dataclass(frozen=True)
class CorpusConfig:
    """Everything `m3rt embed-corpus` / embed_corpus takes besides the artifact and the input."""

    out: str | None = option(None, "output folder: <shard>.parquet per input shard", required=True)
    ray_address: str | None = option(None, "run on Ray Data: local (a new local Ray), auto (the running cluster) "
                                           "or ray://host:port; without it, in this process")
    workers: int = option(1, "with --ray-address: actors, one artifact each")
    cpus_per_worker: float = option(1.0, "with --ray-address: CPUs Ray reserves per actor, its onnxruntime threads")
    gpus_per_worker: float = option(0.0, "with --ray-address: GPUs per actor; above 0 the actors take a GPU backend")
    dense: bool = option(False, "the dense vector (the default when no output is chosen)")
    sparse: bool = option(False, "the sparse weights (token ids and weights)")
    colbert: bool = option(False, "the ColBERT vectors (packed float16)")
    batch_tokens: int | None = option(None, "padded tokens per engine call", default_help="the backend's own")
    id_field: str = option("id", "the id field / column")
    text_field: str = option("text", "the text field / column")
    backend: str = option("auto", "auto, cpu, cuda, ...")

    def __post_init__(self):
        from m3rt.runtime.config import as_int

        if self.out is None:
            raise ValueError("out: the output folder is required")
        object.__setattr__(self, "workers", as_int(self.workers, "workers", 1))
        for name in ("cpus_per_worker", "gpus_per_worker"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be above 0, got {self.cpus_per_worker}")
        if self.batch_tokens is not None:
            object.__setattr__(self, "batch_tokens", as_int(self.batch_tokens, "batch_tokens", 1))

    @property
    def outputs(self) -> Outputs:
        return Outputs.chosen(self.dense, self.sparse, self.colbert)


def embed_corpus(artifact: str | Path, input: str | Path, config: CorpusConfig | None = None, *,
                 progress: Callable[[str, int], None] | None = None, **options) -> dict:
    """Encode INPUT (a .jsonl / .parquet file, or a folder of them) into OUT/<shard>.parquet. `options`:
    CorpusConfig's fields. Without ray_address, in this process; with one ("local": a new local Ray instance,
    "auto": the running cluster, "ray://host:port": a remote one), on Ray Data with `workers` actors of
    `cpus_per_worker` CPUs (and `gpus_per_worker` GPUs: a GPU backend) each. Outputs: dense when none is chosen.
    progress(shard name, rows written) after every chunk. Returns a summary (shards done / skipped, rows, s)."""
    c = replace(config, **options) if config is not None else CorpusConfig(**options)
    shards = input_shards(input)
    out = Path(c.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    require_pyarrow("embed-corpus writes Parquet and")
    with exclusive_lock(out, "another embed-corpus job"):
        return _run(artifact, shards, out, c, progress)


def _run(artifact, shards: list[Path], out: Path, c: CorpusConfig, progress) -> dict:
    outputs = c.outputs
    # An http(s) artifact is fetched once into this machine's cache (workers on other nodes fetch their own).
    local = resolve_artifact(artifact)
    settings = schema.settings_for(read_manifest(local, verify="once"), outputs)
    out.mkdir(parents=True, exist_ok=True)  # only once the artifact is known good
    for p in clean_leftovers(out):
        log.info("removed %s, left by an interrupted run", p)
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
    if c.ray_address is None:
        rows = _in_process(local, todo, out, outputs, settings, c.batch_tokens, c.id_field, c.text_field, c.backend,
                           progress)
    else:
        from m3rt.corpus.ray_data import embed_shards

        rows = embed_shards(artifact, todo, out, settings=settings, ray_address=c.ray_address, workers=c.workers,
                            cpus_per_worker=c.cpus_per_worker, gpus_per_worker=c.gpus_per_worker, outputs=outputs,
                            batch_tokens=c.batch_tokens, id_field=c.id_field, text_field=c.text_field,
                            backend=c.backend, progress=progress)
    return {"shards_done": [s.name for s in todo], "shards_skipped": skipped, "rows": rows,
            "seconds": time.perf_counter() - started, "out": str(out), "outputs": list(outputs.names)}


def _in_process(artifact, shards, out, outputs, settings, batch_tokens, id_field, text_field, backend,
                progress) -> int:
    from m3rt import M3Runtime

    total = 0
    with M3Runtime(artifact, backend=backend, max_batch_tokens=batch_tokens) as rt:
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
                      for enc in rt.iter_encode(texts(), **outputs.flags()))
            rows = write_shard(output_path(out, shard), tables, settings,
                               None if progress is None else lambda n, name=shard.name: progress(name, n))
            total += rows
            log.info("%s: %d rows -> %s", shard.name, rows, output_path(out, shard))
    return total
