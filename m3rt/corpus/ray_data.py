"""The corpus job's Ray runner (the `ray` extra): m3rt's outputs as a Ray Data map_batches stage over an actor
pool (each actor loads the artifact once).

embed_dataset(ds, artifact, ...) -> Dataset with the output shard schema (schema.py), for users with a Ray
pipeline (public as m3rt.ray.embed_dataset); embed_shards runs `m3rt embed-corpus --ray-address` with it, every
pending shard in one Dataset.
Actors are restarted and their batches retried when a worker process dies (max_restarts / max_task_retries
-1), so a killed worker delays the job but loses nothing; the driver drops the second copy of a batch that a
retry handed over twice (same ids) and checks that every input row came out.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from m3rt.artifact import resolve_artifact
from m3rt.corpus import schema
from m3rt.corpus.shards import ShardWriter, coarsen, index_chunks, output_path, read_chunk
from m3rt.runtime.outputs import Outputs

log = logging.getLogger("m3rt.corpus")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("m3rt on Ray needs the ray extra: pip install 'm3rt[ray]'") from None
    return ray


# Rows per map_batches call. On CPUs small, so that the work spreads evenly over the actors (with large calls
# one actor did a whole shard while another idled: bench/results/design-notes.md); Ray's cost per call (milliseconds) is nothing
# beside 64 rows of encoding on a CPU (seconds). GPUs encode 64 rows in a fraction of a second: larger calls
# there. The runtime batches by tokens inside each call.
BATCH_ROWS_CPU = 64
BATCH_ROWS_GPU = 1024
# Pieces of input per actor (at least): the tail, where some actors are done and others still busy, is then
# a small share of the job.
CHUNKS_PER_WORKER = 64
# The column the reader adds and the driver drops: which input shard a row came from.
SHARD_COLUMN = "_m3rt_shard"


class Embedder:
    """The map_batches callable: one M3Runtime per actor, a pyarrow batch of (id, text) in, shard rows out
    (with the input's `keep_columns` appended)."""

    def __init__(self, artifact, outputs, id_column, text_column, threads, backend, batch_tokens, keep_columns=()):
        from m3rt import M3Runtime

        # Threads = the CPUs Ray reserved for this actor, so that actors on one node do not oversubscribe it.
        self.runtime = M3Runtime(resolve_artifact(artifact), backend=backend, max_batch_tokens=batch_tokens,
                                 intra_op_threads=threads)
        self.outputs = Outputs.of(outputs)
        self.settings = schema.settings_for(self.runtime.manifest, self.outputs)
        self.id_column, self.text_column, self.keep_columns = id_column, text_column, tuple(keep_columns)

    def __call__(self, batch):
        names = batch.column_names
        for col in (self.id_column, self.text_column, *self.keep_columns):
            if col not in names:
                raise ValueError(f"input has no column {col!r} (columns: {', '.join(names)})")
        ids = batch.column(self.id_column).to_pylist()
        texts = batch.column(self.text_column).to_pylist()
        for k, (i, t) in enumerate(zip(ids, texts)):
            if i is None or isinstance(i, bool) or not isinstance(i, (int, str)):
                raise ValueError(f"row with text {str(t)[:40]!r}: id must be an integer or a string, got {i!r}")
            if not isinstance(t, str):
                raise ValueError(f"row {i!r}: {self.text_column!r} must be a string, got {type(t).__name__}")
        enc = self.runtime.encode_native(texts, **self.outputs.flags())
        table = schema.to_table(ids, enc, self.settings)
        for col in self.keep_columns:
            table = table.append_column(col, batch.column(col))
        return table


def embed_dataset(ds, artifact: str | Path, *, dense: bool = False, sparse: bool = False, colbert: bool = False,
                  id_column: str = "id", text_column: str = "text", keep_columns=(), workers: int = 1,
                  num_cpus: float = 1, num_gpus: float = 0, batch_rows: int | None = None,
                  batch_tokens: int | None = None, backend: str = "auto"):
    """ds (columns id_column, text_column) -> a Dataset of the shard schema (plus the input's keep_columns),
    computed by `workers` actors each holding `num_cpus` CPUs (its onnxruntime threads) and `num_gpus` GPUs
    (num_gpus > 0 picks a GPU backend under backend="auto"). Outputs: dense when none is chosen. artifact: a
    path every node can read, or an http(s) URL each node fetches once. batch_rows: rows per actor call
    (default 64 on CPUs, 1,024 on GPUs). Ray Data gives an actor whole blocks, so for the work to spread over
    the actors ds's blocks should not be much larger than that (ds.repartition)."""
    ray = _ray()
    outputs = Outputs.chosen(dense, sparse, colbert)
    if num_gpus and backend == "auto":
        backend = "auto-gpu"
    threads = max(1, int(num_cpus))
    batch_rows = batch_rows or (BATCH_ROWS_GPU if num_gpus else BATCH_ROWS_CPU)
    # Two calls queued per actor (Ray's default is 4): the next is there when one ends, and an actor cannot
    # hoard the calls that another, idle one could run.
    pool = ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2)
    return ds.map_batches(
        Embedder, batch_size=batch_rows, batch_format="pyarrow", compute=pool,
        num_cpus=num_cpus,
        num_gpus=num_gpus or None, max_restarts=-1, max_task_retries=-1,
        fn_constructor_kwargs=dict(artifact=str(artifact), outputs=outputs.names, id_column=id_column,
                                   text_column=text_column, threads=threads, backend=backend,
                                   batch_tokens=batch_tokens, keep_columns=tuple(keep_columns)))


def embed_shards(artifact, shards: list[Path], out: Path, *, settings: dict, ray_address: str, workers: int,
                 outputs: Outputs, batch_tokens, id_field: str, text_field: str, backend: str,
                 cpus_per_worker: float = 1, gpus_per_worker: float = 0, batch_rows: int | None = None,
                 progress=None) -> int:
    """Every pending shard in ONE Dataset, so that the actor pool starts (and loads the artifact) once and
    stays busy across shard boundaries; each row carries its shard's path back to this driver, which writes it
    into that shard's output (corpus/shards.py: whole or not at all) and commits the shard as soon as all its
    rows are out (indexed beforehand by zero-CPU tasks), so a crash keeps every shard committed by then.
    Returns the rows written."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=None if ray_address == "local" else ray_address, log_to_driver=False)
    if not shards:
        return 0
    _wait_for_free(ray, workers * cpus_per_worker, workers * gpus_per_worker)
    by_name = {s.name: s for s in shards}
    # The index and the reads reserve no CPU: they are I/O, and with every CPU held by an actor a 1-CPU task
    # would never be scheduled (seen on a 2-CPU cluster with 2 workers: the job waited forever).
    batch_rows = batch_rows or (BATCH_ROWS_GPU if gpus_per_worker else BATCH_ROWS_CPU)
    index = ray.remote(num_cpus=0)(index_chunks)
    paths = {name: s.resolve() for name, s in by_name.items()}
    fine = dict(zip(paths, ray.get([index.remote(p, batch_rows) for p in paths.values()])))
    expected = {name: sum(c[-1] for c in chunks) for name, chunks in fine.items()}
    # At least CHUNKS_PER_WORKER pieces per actor, so that the last ones leave little idle time.
    piece_rows = max(batch_rows, -(-sum(expected.values()) // (workers * CHUNKS_PER_WORKER)))
    pieces = [(str(paths[name]), chunk) for name, chunks in fine.items()
              for chunk in coarsen(chunks, piece_rows)]
    rows = _read_pieces(ray, pieces, id_field, text_field, readers=max(2, workers))
    done = embed_dataset(rows, artifact, dense=outputs.dense, sparse=outputs.sparse, colbert=outputs.colbert,
                         id_column=id_field, text_column=text_field,
                         keep_columns=(SHARD_COLUMN,), workers=workers,
                         num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, batch_rows=batch_rows,
                         batch_tokens=batch_tokens, backend=backend)
    try:
        return _write_by_shard(done.iter_batches(batch_size=None, batch_format="pyarrow"), by_name, expected, out,
                               settings, progress)
    except Exception as e:
        cause = task_cause(e)
        if cause is None:
            raise
        raise cause from None  # the reader's or the runtime's own error ("shard.jsonl:3: not valid JSON")


def task_cause(error: BaseException) -> BaseException | None:
    """The user-code exception inside a Ray error (RayTaskError and Ray Data's wrappers print a remote
    traceback header as their message), or None when there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if not type(error).__module__.startswith("ray.") and not type(error).__name__.startswith("RayTaskError"):
            return error
        error = getattr(error, "cause", None) or error.__cause__
    return None


def _wait_for_free(ray, cpus: float, gpus: float, timeout_s: float = 10.0) -> None:
    """Wait (at most timeout_s) until the pool's CPUs and GPUs are free. The actors of a job that just ended
    in this process hold theirs for a second or two more, and a pool started then ran the whole job with one
    actor of two (bench/results/design-notes.md)."""
    deadline = time.monotonic() + timeout_s
    while True:
        free = ray.available_resources()
        if free.get("CPU", 0) >= cpus and free.get("GPU", 0) >= gpus:
            return
        if time.monotonic() > deadline:
            log.info("starting with %s CPU / %s GPU free of the %s / %s the actors need", free.get("CPU", 0),
                     free.get("GPU", 0), cpus, gpus)
            return
        time.sleep(0.1)


def _read_pieces(ray, pieces: list[tuple], id_field: str, text_field: str, readers: int):
    """One Dataset of (id, text, shard path): one zero-CPU task and one block per piece. One block per piece
    matters: Ray Data hands an actor whole blocks, and merges what one task yields into blocks of up to
    128 MiB, so a whole shard read by one task became one block, and one of two actors did both shards while
    the other was scaled away (bench/results/design-notes.md). Its streaming repartition would cut them, but its tasks
    hold a CPU, which never comes free while the actors hold every one."""
    items = [{"file": path, "chunk": json.dumps(chunk)} for path, chunk in pieces]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        read_piece, batch_size=1, batch_format="pyarrow", num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=readers), fn_kwargs=dict(id_field=id_field, text_field=text_field))


def read_piece(batch, id_field: str, text_field: str):
    """map_batches: the (id, text, shard) rows of the piece in `batch` (corpus/shards.py's checks and
    messages, naming file and line). A generator of one table: Ray Data passes a generator's own exception
    type through (RayTaskError(ValueError)), where a plain function's becomes a UserCodeException that keeps
    only the text."""
    import pyarrow as pa

    path, chunk = batch.column("file")[0].as_py(), tuple(json.loads(batch.column("chunk")[0].as_py()))
    ids, texts = zip(*read_chunk(Path(path), chunk, id_field, text_field))
    try:
        id_column = schema.id_array(ids)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    yield pa.table({id_field: id_column, text_field: pa.array(texts, pa.string()),
                    SHARD_COLUMN: pa.array([path] * len(ids), pa.string())})


def _write_by_shard(tables, by_name: dict, expected: dict, out: Path, settings: dict, progress) -> int:
    """Route each table's rows to their shard's writer, each id once per shard (a retried task can hand a
    batch over twice); commit a shard when its expected count of distinct ids is in. Raises, aborting every
    uncommitted shard, when the stream ends with a shard short (duplicate ids in its input)."""
    import pyarrow.compute as pc

    metadata = schema.empty_table(settings).schema
    writers: dict = {}
    seen = {name: set() for name in by_name}
    committed: set = set()
    total = 0

    def commit(name: str) -> None:
        nonlocal total
        writer = writers.pop(name, None) or ShardWriter(output_path(out, by_name[name]))
        writer.commit(metadata)
        committed.add(name)
        total += writer.rows
        log.info("%s: %d rows -> %s", name, writer.rows, writer.final)

    try:
        for table in tables:
            paths = table.column(SHARD_COLUMN)
            for path in pc.unique(paths).to_pylist():
                name = os.path.basename(path)
                if name not in by_name:
                    raise RuntimeError(f"a row came from {path!r}, not one of this job's input shards")
                part = table.filter(pc.equal(paths, path)).drop_columns([SHARD_COLUMN])
                ids = part.column("id").to_pylist()
                fresh = [k for k, i in enumerate(ids) if i not in seen[name]]
                if len(fresh) < len(ids):
                    log.warning("%s: %d rows handed over twice (a retried batch): kept once", name,
                                len(ids) - len(fresh))
                    part = part.take(fresh)
                seen[name].update(ids)
                if name in committed:
                    if part.num_rows:  # new ids after the count was reached: the count was wrong
                        raise RuntimeError(f"{by_name[name]}: more rows came out than the {expected[name]} counted "
                                           "in it (was it changed during the job?)")
                    continue  # a late second copy of a retried batch
                writer = writers.setdefault(name, ShardWriter(output_path(out, by_name[name])))
                if part.num_rows:
                    writer.write(part.replace_schema_metadata(metadata.metadata))
                if progress is not None:
                    progress(name, writer.rows)
                if len(seen[name]) == expected[name]:
                    commit(name)
        for name in [n for n in by_name if expected[n] == 0]:  # empty input shards: an empty output each
            commit(name)
        short = {n: (expected[n], len(seen[n])) for n in by_name if n not in committed and expected[n]}
        if short:
            raise RuntimeError("; ".join(f"{by_name[n]}: {want} input rows but {got} distinct ids came out"
                                         for n, (want, got) in short.items()) + " (duplicate ids in the input?)")
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return total
