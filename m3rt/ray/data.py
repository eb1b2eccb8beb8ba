"""Ray Data: m3rt's outputs as a map_batches stage over an actor pool (each actor loads the artifact once).

embed_dataset(ds, artifact, ...) -> Dataset with the output shard schema (m3rt/corpus/schema.py), for users
with a Ray pipeline; embed_shards runs `m3rt embed-corpus --ray-address` shard by shard with it.
Actors are restarted and their batches retried when a worker process dies (max_restarts / max_task_retries
-1), so a killed worker delays the job but loses nothing; the driver drops the second copy of a batch that a
retry handed over twice (same ids) and checks that every input row came out.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("m3rt.ray")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("m3rt on Ray needs the ray extra: pip install 'm3rt[ray]'") from None
    return ray


def resolve_artifact(artifact: str | Path) -> Path:
    """A local path (a shared filesystem's on a cluster) as is; an http(s) URL fetched once per node."""
    from m3rt.artifact import fetch_artifact

    if isinstance(artifact, str) and artifact.startswith(("http://", "https://")):
        return fetch_artifact(artifact)
    return Path(artifact)


class Embedder:
    """The map_batches callable: one M3Runtime per actor, a pyarrow batch of (id, text) in, shard rows out."""

    def __init__(self, artifact, outputs, id_column, text_column, threads, backend, batch_tokens):
        from m3rt import M3Runtime
        from m3rt.artifact import read_manifest
        from m3rt.corpus.schema import encode_flags, settings_for

        path = resolve_artifact(artifact)
        # Threads = the CPUs Ray reserved for this actor, so that actors on one node do not oversubscribe it.
        self.runtime = M3Runtime(path, backend=backend, max_batch_tokens=batch_tokens, intra_op_threads=threads)
        self.settings = settings_for(read_manifest(path, verify="once"), tuple(outputs))
        self.returns = encode_flags(tuple(outputs))
        self.id_column, self.text_column = id_column, text_column

    def __call__(self, batch):
        from m3rt.corpus.schema import to_table

        names = batch.column_names
        for col in (self.id_column, self.text_column):
            if col not in names:
                raise ValueError(f"input has no column {col!r} (columns: {', '.join(names)})")
        ids = batch.column(self.id_column).to_pylist()
        texts = batch.column(self.text_column).to_pylist()
        for k, (i, t) in enumerate(zip(ids, texts)):
            if i is None or isinstance(i, bool) or not isinstance(i, (int, str)):
                raise ValueError(f"row with text {str(t)[:40]!r}: id must be an integer or a string, got {i!r}")
            if not isinstance(t, str):
                raise ValueError(f"row {i!r}: {self.text_column!r} must be a string, got {type(t).__name__}")
        enc = self.runtime.encode_native(texts, **self.returns)
        return to_table(ids, enc, self.settings)


def embed_dataset(ds, artifact: str | Path, *, dense: bool = False, sparse: bool = False, colbert: bool = False,
                  id_column: str = "id", text_column: str = "text", workers: int = 1, num_cpus: float = 1,
                  num_gpus: float = 0, batch_rows: int = 1024, batch_tokens: int | None = None,
                  backend: str = "auto"):
    """ds (columns id_column, text_column) -> a Dataset of the shard schema, computed by `workers` actors each
    holding `num_cpus` CPUs (its onnxruntime threads) and `num_gpus` GPUs (num_gpus > 0 picks a GPU backend
    under backend="auto"). Outputs: dense when none is chosen. artifact: a path every node can read, or an
    http(s) URL each node fetches once."""
    ray = _ray()
    from m3rt.corpus.schema import outputs_of

    outputs = outputs_of(dense, sparse, colbert)
    if num_gpus and backend == "auto":
        backend = "auto-gpu"
    threads = max(1, int(num_cpus))
    return ds.map_batches(
        Embedder, batch_size=batch_rows, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=num_cpus,
        num_gpus=num_gpus or None, max_restarts=-1, max_task_retries=-1,
        fn_constructor_kwargs=dict(artifact=str(artifact), outputs=outputs, id_column=id_column,
                                   text_column=text_column, threads=threads, backend=backend,
                                   batch_tokens=batch_tokens))


def embed_shards(artifact, shards: list[Path], out: Path, *, ray_address: str, workers: int, outputs: tuple,
                 batch_tokens, id_field: str, text_field: str, backend: str, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0, progress=None) -> int:
    """Each shard read by Ray Data, embedded by the actor pool, its rows streamed back to this driver and
    written as one output shard (corpus/shards.py: whole or not at all)."""
    ray = _ray()
    from m3rt.corpus.schema import settings_for
    from m3rt.corpus.shards import output_path, write_shard
    from m3rt.artifact import read_manifest

    if not ray.is_initialized():
        ray.init(address=None if ray_address == "local" else ray_address, log_to_driver=False)
    settings = settings_for(read_manifest(resolve_artifact(artifact), verify="once"), outputs)
    flags = {o: o in outputs for o in ("dense", "sparse", "colbert")}
    total = 0
    for shard in shards:
        src = str(shard.resolve())
        # Reads reserve no CPU: they are I/O, and with every CPU held by an actor a 1-CPU read task would never
        # be scheduled (seen on a 2-CPU cluster with 2 workers: the job waited forever).
        read = ray.data.read_json if shard.suffix == ".jsonl" else ray.data.read_parquet
        ds = read(src, ray_remote_args={"num_cpus": 0})
        expected = ds.count()
        done = embed_dataset(ds, artifact, **flags, id_column=id_field, text_column=text_field, workers=workers,
                             num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, batch_tokens=batch_tokens,
                             backend=backend)
        rows = write_shard(output_path(out, shard), _once_each(done, shard, expected), settings,
                           None if progress is None else lambda n, name=shard.name: progress(name, n))
        total += rows
        log.info("%s: %d rows -> %s", shard.name, rows, output_path(out, shard))
    return total


def _once_each(done, shard: Path, expected: int):
    """The embedded tables of a shard, each id once (a retried task can hand a batch over twice); raises at the
    end, which aborts the shard, unless exactly `expected` distinct ids came out."""
    seen: set = set()
    for table in done.iter_batches(batch_size=None, batch_format="pyarrow"):
        ids = table.column("id").to_pylist()
        fresh = [k for k, i in enumerate(ids) if i not in seen]
        if len(fresh) < len(ids):
            log.warning("%s: %d rows handed over twice (a retried batch): kept once", shard.name,
                        len(ids) - len(fresh))
            table = table.take(fresh)
        seen.update(ids)
        yield table
    if len(seen) != expected:
        raise RuntimeError(f"{shard}: {expected} input rows but {len(seen)} distinct ids came out "
                           "(duplicate ids in the input?)")
