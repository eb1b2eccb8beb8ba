"""M3Runtime: a drop-in for FlagEmbedding's BGEM3FlagModel on an m3rt artifact.

tokenize -> engine -> head postprocessing. Texts are sorted by length and cut into batches bounded by
`batch_size` and a padded-token budget; results come back in input order; only the outputs asked for are
post-processed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from m3rt.artifact import read_manifest
from m3rt.errors import ArtifactError
from m3rt.runtime import scoring
from m3rt.runtime.backends import create_engine
from m3rt.runtime.encoded import Encoded
from m3rt.runtime.executor import Executor
from m3rt.runtime.config import DEFAULT_MAX_LENGTH, RuntimeConfig, as_int
from m3rt.runtime.cpu_check import check_int8_on_this_cpu
from m3rt.runtime.drop_in import check as check_drop_in
from m3rt.runtime.drop_in import split as split_drop_in
from m3rt.runtime.graph_check import check_graph_against_manifest
from m3rt.runtime.outputs import Outputs
from m3rt.runtime.pipeline import Pipeline, Plan, Tokenized
from m3rt.runtime.texts import check_pairs, check_texts
from m3rt.runtime.tokenize import TextTokenizer

log = logging.getLogger("m3rt.runtime")


class M3Runtime:
    """Encode and score texts with an artifact written by `m3rt export`.

    >>> rt = M3Runtime("artifact-dir", batch_size=64)
    >>> out = rt.encode(["hello"], return_dense=True, return_sparse=True, return_colbert_vecs=True)
    """

    def __init__(self, artifact: str | Path, config: RuntimeConfig | None = None, **options):
        """`options`: RuntimeConfig's and BackendOptions' fields, and every BGEM3FlagModel argument
        (runtime/drop_in.py says what each does here)."""
        options, drop_in = split_drop_in(options)
        self.config = (config or RuntimeConfig()).with_overrides(**options)
        self.manifest = read_manifest(artifact, verify=self.config.verify_checksums)
        default = min(DEFAULT_MAX_LENGTH, self.manifest.max_length)
        self.query_max_length = self.check_max_length(_default(self.config.query_max_length, default),
                                                      "query_max_length")
        self.passage_max_length = self.check_max_length(_default(self.config.passage_max_length, default),
                                                        "passage_max_length")
        self.tokenizer = TextTokenizer.from_manifest(self.manifest)
        # Checked before every call: the files read while running (the tokenizer is in memory by now).
        self._watched = self.manifest.graph_files
        self.engine = create_engine(self.config.backend, self.manifest, self.config)
        try:
            check_graph_against_manifest(self.manifest, self.engine, self.tokenizer)
            check_drop_in(drop_in, self.manifest, self.engine)
            # The metrics re-measured here, for an int8 artifact exported on another CPU class.
            self.cpu_check = check_int8_on_this_cpu(self.manifest, self.engine) if self.config.check_cpu_class else None
        except BaseException:
            self.engine.close()
            raise
        self.batch_tokens = self.config.max_batch_tokens or self.engine.preferred_batch_tokens
        dims = self.manifest.dims
        self.pipeline = Pipeline(self.tokenizer, self.engine, pad_id=self.manifest.pad_id,
                                 skip_ids=self.manifest.sparse_skip_ids, hidden=dims.hidden, colbert_dim=dims.colbert,
                                 truncate_dim=self.config.truncate_dim)

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | Path, *, precision: str = "fp32", attention: str = "fused",
                        cache_dir: str | Path | None = None, **options) -> "M3Runtime":
        """A model directory in the BAAI/bge-m3 layout, or a hub id, exported once into m3rt's cache (default
        ~/.cache/m3rt/artifacts; see m3rt/pretrained.py) and loaded from there; `options` as for M3Runtime.
        Needs the `export` extra when the artifact is not cached yet."""
        from m3rt.pretrained import cached_artifact  # lazily: loading an artifact never imports the exporter

        return cls(cached_artifact(model_name_or_path, precision=precision, attention=attention,
                                   cache_dir=cache_dir), **options)

    @property
    def output_dims(self) -> dict[str, int]:
        """Widths of the vectors this runtime returns: {"dense": H, "colbert": Hc} (after truncate_dim)."""
        dims, cut = self.manifest.dims, self.config.truncate_dim
        return {"dense": min(dims.hidden, cut or dims.hidden), "colbert": min(dims.colbert, cut or dims.colbert)}

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Free the engine's resources (device memory, sessions); the runtime cannot encode afterwards."""
        self.engine.close()

    def __enter__(self) -> "M3Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ encoding
    def encode(
        self, sentences: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None,
        return_dense: bool | None = None, return_sparse: bool | None = None,
        return_colbert_vecs: bool | None = None,
    ) -> dict:
        return self._encode_with_defaults(sentences, batch_size, max_length, self.passage_max_length,
                                          return_dense, return_sparse, return_colbert_vecs)

    def encode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None,
        return_dense: bool | None = None, return_sparse: bool | None = None,
        return_colbert_vecs: bool | None = None,
    ) -> dict:
        """As encode, with the query instruction (if configured) and query_max_length by default."""
        return self._encode_with_defaults(self._with_instruction(queries), batch_size, max_length,
                                          self.query_max_length, return_dense, return_sparse,
                                          return_colbert_vecs)

    def encode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None,
        return_dense: bool | None = None, return_sparse: bool | None = None,
        return_colbert_vecs: bool | None = None,
    ) -> dict:
        return self.encode(corpus, batch_size, max_length, return_dense, return_sparse, return_colbert_vecs)

    def _encode_with_defaults(self, texts, batch_size, max_length, default_max_length, dense, sparse, colbert):
        return self._encode(texts, self._plan(batch_size, max_length, dense, sparse, colbert, default_max_length))

    def _encode(self, sentences, plan: Plan) -> dict:
        single = isinstance(sentences, str)
        texts = [sentences] if single else check_texts(sentences, "sentences")
        return self._encode_list(texts, plan).as_flag_dict(single)

    def encode_native(
        self, sentences: Sequence[str], *, batch_size: int | None = None, max_length: int | None = None,
        return_dense: bool | None = None, return_sparse: bool | None = None, return_colbert_vecs: bool | None = None,
    ) -> Encoded:
        """As encode, returning the native `Encoded` (dense array, sparse CSR, packed ColBERT vectors)."""
        plan = self._plan(batch_size, max_length, return_dense, return_sparse, return_colbert_vecs)
        return self._encode_list(check_texts(sentences, "sentences"), plan)

    def iter_encode(
        self, texts: Iterable[str], *, batch_size: int | None = None, max_length: int | None = None,
        return_dense: bool | None = None, return_sparse: bool | None = None, return_colbert_vecs: bool | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[Encoded]:
        """Encode any iterable of texts (a generator over millions of them) chunk by chunk: at most
        `chunk_size` texts (default config.chunk_size) are held at a time, and `Encoded` chunks come out in
        input order. While the engine runs one chunk, a helper thread reads and tokenizes the next. Pipelined
        (config.pipelined), up to five chunks are held: read, tokenized ahead, in the engine, being collected, and
        finished waiting to be taken."""
        c = self.config
        plan = self._plan(batch_size, max_length, return_dense, return_sparse, return_colbert_vecs)
        chunk_size = as_int(_default(chunk_size, c.chunk_size), "chunk_size", minimum=1)
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts must be an iterable of str, got {type(texts).__name__}")
        total = len(texts) if isinstance(texts, Sized) else None
        source = iter(texts)
        if self._pipelined():
            yield from self._iter_pipelined(source, plan, chunk_size, total)
            return
        state = {"start": 0}

        def next_chunk() -> Tokenized | None:
            chunk = list(itertools.islice(source, chunk_size))
            if not chunk:
                return None
            start = state["start"]
            state["start"] += len(chunk)
            return self.pipeline.tokenize(check_texts(chunk, "texts", offset=start), start, plan.max_length)

        overlap = c.overlap_tokenize if c.overlap_tokenize is not None else self.engine.on_gpu
        done = cut = 0
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="m3rt-tokenize") as reader:
                pending = reader.submit(next_chunk)
                while (tok := pending.result()) is not None:
                    if overlap:
                        pending = reader.submit(next_chunk)  # read and tokenize the next chunk during this run
                    self._check_unchanged()
                    encoded = self.pipeline.encode_chunk(tok, plan, self._progress_counter(done, total))
                    done += len(encoded)
                    cut += int(encoded.truncated.sum())
                    yield encoded
                    if not overlap:
                        pending = reader.submit(next_chunk)
        finally:
            _report_cuts(cut, done, plan.max_length)  # once per call, however it ended

    def tokenize(self, texts: Sequence[str], *, max_length: int | None = None) -> Tokenized:
        """Texts -> token ids cut at max_length (default passage_max_length), the work per text bounded by
        max_length whatever the text's size: for callers that admit work by its tokens (m3rt serve) before
        encoding it with encode_tokenized."""
        max_length = self.check_max_length(_default(max_length, self.passage_max_length))
        return self.pipeline.tokenize(check_texts(texts, "texts"), 0, max_length)

    def encode_tokenized(
        self, tokenized: Tokenized, *, batch_size: int | None = None, return_dense: bool | None = None,
        return_sparse: bool | None = None, return_colbert_vecs: bool | None = None,
    ) -> Encoded:
        """As encode_native, on texts tokenized by `tokenize` (Tokenized.join merges several calls' texts)."""
        plan = self._plan(batch_size, None, return_dense, return_sparse, return_colbert_vecs)
        self._check_unchanged()
        encoded = self.pipeline.encode_chunk(tokenized, plan, self._progress_counter(0, len(tokenized.rows)))
        _report_cuts(int(encoded.truncated.sum()), len(encoded), 0)
        return encoded

    def _encode_list(self, texts: list[str], plan: Plan) -> Encoded:
        """One whole list as one chunk (encode's length sorting spans all of it)."""
        self._check_unchanged()
        if self._pipelined():
            encoded = Executor(self.pipeline, plan, progress=self._progress_counter(0, len(texts))).encode(texts)
            _report_cuts(int(encoded.truncated.sum()), len(encoded), plan.max_length)
            return encoded
        tok = self.pipeline.tokenize(texts, 0, plan.max_length)
        encoded = self.pipeline.encode_chunk(tok, plan, self._progress_counter(0, len(texts)))
        _report_cuts(int(encoded.truncated.sum()), len(encoded), plan.max_length)
        return encoded

    def _pipelined(self) -> bool:
        """config.pipelined, by default on for GPU engines (duck-typed test engines declare nothing: off)."""
        on = self.config.pipelined
        return bool(getattr(self.engine, "on_gpu", False)) if on is None else bool(on)

    def _iter_pipelined(self, source: Iterator[str], plan: Plan, chunk_size: int, total: int | None
                        ) -> Iterator[Encoded]:
        """iter_encode through the executor: the same chunks, read, checked and tokenized on its threads."""

        def chunks():
            start = 0
            while chunk := list(itertools.islice(source, chunk_size)):
                yield start, check_texts(chunk, "texts", offset=start)
                start += len(chunk)

        executor = Executor(self.pipeline, plan, check=self._check_unchanged,
                            progress=self._progress_counter(0, total))
        done = cut = 0
        try:
            for encoded in executor.stream(chunks()):
                done += len(encoded)
                cut += int(encoded.truncated.sum())
                yield encoded
        finally:
            _report_cuts(cut, done, plan.max_length)  # once per call, however it ended

    def _plan(self, batch_size, max_length, dense, sparse, colbert, default_max_length: int | None = None) -> Plan:
        """What to compute, within the engine's limits; arguments left as None take the configured defaults, as
        in BGEM3FlagModel (max_length: `default_max_length`, else passage_max_length)."""
        c = self.config
        max_length = _default(max_length, _default(default_max_length, self.passage_max_length))
        max_length = self.check_max_length(max_length, "max_length")
        batch_size = as_int(_default(batch_size, c.batch_size), "batch_size", minimum=1)
        wanted = Outputs(bool(_default(dense, c.return_dense)), bool(_default(sparse, c.return_sparse)),
                         bool(_default(colbert, c.return_colbert_vecs)))
        limits = self.engine.limits
        if limits.max_rows is not None:
            batch_size = min(batch_size, limits.max_rows)
        tokens = self.batch_tokens if limits.max_tokens is None else min(self.batch_tokens, limits.max_tokens)
        return Plan(max_length=max_length, batch_size=batch_size, batch_tokens=tokens, outputs=wanted)

    def _progress_counter(self, done: int, total: int | None):
        callback = self.config.progress
        if callback is None:
            return None
        state = [done]

        def advance(n: int) -> None:
            state[0] += n
            callback(state[0], total)

        return advance

    def _check_unchanged(self) -> None:
        """The graph's weights are memory-mapped: a file rewritten since load would give wrong numbers (or a
        SIGBUS when truncated). A stat of the graph's files per call (~10 us) catches a change made between
        calls."""
        changed = self.manifest.changed_files(self._watched)
        if changed:
            raise ArtifactError(f"{self.manifest.root}: {', '.join(changed)} changed on disk since this runtime "
                                "loaded it (artifacts are read-only while in use); load the artifact again")

    def _with_instruction(self, queries):
        instruction = self.config.query_instruction_for_retrieval
        if instruction is None:
            return queries
        fmt = self.config.query_instruction_format.replace("\\n", "\n")
        if isinstance(queries, str):
            return fmt.format(instruction, queries)
        return [fmt.format(instruction, q) for q in check_texts(queries, "queries")]

    def check_max_length(self, value, name: str = "max_length") -> int:
        """`value` as a token limit this artifact allows (2 .. its max_length), else a ValueError naming `name`."""
        limit = self.manifest.max_length
        value = as_int(value, name, minimum=2, why="room for <s> and </s>")
        if value > limit:
            raise ValueError(f"{name}={value} is above the model's limit of {limit} tokens")
        return value

    # ------------------------------------------------------------------ scoring
    def compute_lexical_matching_score(self, lexical_weights_1, lexical_weights_2):
        if isinstance(lexical_weights_1, dict) and isinstance(lexical_weights_2, dict):
            return scoring.lexical_matching_score(lexical_weights_1, lexical_weights_2)
        if isinstance(lexical_weights_1, list) and isinstance(lexical_weights_2, list):
            return np.array([[scoring.lexical_matching_score(a, b) for b in lexical_weights_2]
                             for a in lexical_weights_1])
        raise ValueError("lexical weights must be two dicts or two lists of dicts")

    def colbert_score(self, q_reps: np.ndarray, p_reps: np.ndarray) -> np.float32:
        return scoring.colbert_score(q_reps, p_reps)

    def compute_score(
        self, sentence_pairs, batch_size: int | None = None, max_query_length: int | None = None,
        max_passage_length: int | None = None, weights_for_different_modes: Sequence[float] | None = None,
    ) -> dict:
        """Scores of (query, passage) pairs: keys colbert, sparse, dense, sparse+dense, colbert+sparse+dense.

        Lists for a list of pairs, floats for one pair. ColBERT follows upstream's compute_score, whose
        passage padding floors a query token's max at 0 for passages shorter than the longest one in
        their chunk of `batch_size` pairs (see scoring.pair_scores); `colbert_score` has no such floor.
        """
        c = self.config
        batch_size = _default(batch_size, c.batch_size)
        weights = [1.0, 1.0, 1.0] if weights_for_different_modes is None else list(weights_for_different_modes)
        if len(weights) != 3:
            raise ValueError(f"weights_for_different_modes needs 3 weights (dense, sparse, colbert), got {len(weights)}")
        one = isinstance(sentence_pairs, (tuple, list)) and len(sentence_pairs) == 2 and all(
            isinstance(t, str) for t in sentence_pairs)
        pairs = [sentence_pairs] if one else check_pairs(sentence_pairs)
        if not pairs:
            return {k: [] for k in ("colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense")}
        q = self._encode([p[0] for p in pairs], self._plan(batch_size, max_query_length, True, True, True,
                                                           self.query_max_length))
        p = self._encode([p[1] for p in pairs], self._plan(batch_size, max_passage_length, True, True, True))
        scores = scoring.pair_scores(
            q["dense_vecs"], p["dense_vecs"], q["lexical_weights"], p["lexical_weights"],
            q["colbert_vecs"], p["colbert_vecs"], weights, upstream_batch_size=batch_size,
        )
        return {k: v[0] for k, v in scores.items()} if one else scores

    def rerank(
        self, query: str, passages: Sequence[str], top_k: int | None = None, batch_size: int | None = None,
        max_query_length: int | None = None, max_passage_length: int | None = None,
    ) -> list[tuple[int, float]]:
        """Passages ranked by ColBERT MaxSim against `query`: [(passage index, score)], best first."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        passages = check_texts(passages, "passages")
        if not passages:
            return []
        top_k = len(passages) if top_k is None else as_int(top_k, "top_k", minimum=1)
        from m3rt.kernels import rerank as maxsim_rerank

        q = self.encode_queries(query, batch_size, max_query_length, False, False, True)["colbert_vecs"]
        docs = self.encode_native(passages, batch_size=batch_size, max_length=max_passage_length,
                                  return_dense=False, return_sparse=False, return_colbert_vecs=True).colbert
        idx, scores = maxsim_rerank(q, docs.vectors, docs.offsets, top_k)  # packed already: no copy
        return [(int(i), float(s)) for i, s in zip(idx, scores)]

    def convert_id_to_token(self, lexical_weights):
        """{token id: weight} -> {token text: weight}; like upstream, a list of one dict gives a dict."""
        items = [lexical_weights] if isinstance(lexical_weights, dict) else list(lexical_weights)
        converted = [{self.tokenizer.decode_one(int(i)): w for i, w in item.items()} for item in items]
        return converted[0] if len(converted) == 1 else converted


def _report_cuts(cut: int, n: int, max_length: int) -> None:
    """max_length 0: not known here (texts tokenized earlier)."""
    if cut:
        log.warning("%d of %d texts were cut to %s tokens", cut, n, f"max_length={max_length}" if max_length else
                    "their max_length")


def _default(value, fallback):
    return fallback if value is None else value
