"""BenchOptions: every option of `m3rt bench` / run_bench in one dataclass, checked on construction. The CLI
is generated from its fields (their help and choices in the field metadata), so the two cannot drift."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from m3rt.bench.backends import BACKENDS, check_names
from m3rt.bench.models import PRESETS


def _opt(default, help: str, **meta):
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def default_out() -> Path:
    """Results go to the user's cache, never into a source tree (bench/results holds the committed ones)."""
    from m3rt.artifact import cache_dir

    return cache_dir() / "bench" / "results"


@dataclass(frozen=True)
class BenchOptions:
    preset: str | None = _opt(None, "TEST model to build: tiny (seconds) or the bge-m3 shape with random weights "
                                    "(~2.3 GB); default tiny unless --model is given", choices=PRESETS)
    model: str | None = _opt(None, "a local model directory in the BAAI/bge-m3 layout instead of a preset")
    out: str | None = _opt(None, "folder for the results (default: ~/.cache/m3rt/bench/results, or "
                                 "$M3RT_CACHE_DIR/bench/results)")
    work_dir: str | None = _opt(None, "cache of the model and artifacts (default: ~/.cache/m3rt/bench/<preset>)")
    backends: Sequence[str] = _opt(BACKENDS, "comma-separated; the first is the baseline "
                                             f"(default: {','.join(BACKENDS)})")
    batch_sizes: Sequence[int] = _opt((1, 8), "latency grid, rows per call (default: 1,8)")
    seq_lengths: Sequence[int] = _opt((128, 512), "latency grid, tokens per text (default: 128,512)")
    sweep_lengths: Sequence[int] = _opt((32, 128, 512), "batch-1 latency plot, tokens (default: 32,128,512)")
    corpus_size: int = _opt(200, "texts in the throughput corpus (default: 200)")
    corpus_min_tokens: int = _opt(8, "shortest corpus text, tokens (default: 8)")
    corpus_max_tokens: int = _opt(512, "longest corpus text, tokens (default: 512)")
    corpus_batch_size: int = _opt(32, "batch_size of the corpus encode call (default: 32)")
    reps: int = _opt(10, "timed calls per backend and point (default: 10)")
    time_budget_s: float = _opt(60.0, "stop a backend's timed calls at a point after this many seconds "
                                      "(default: 60)")
    threads: int = _opt(0, "torch and onnxruntime threads; 0: their defaults")
    seed: int = _opt(0, "seed of the generated texts (default: 0)")
    name: str | None = _opt(None, "result file name without extension (default: cpu-<preset or model folder>)")

    def __post_init__(self):
        set_ = object.__setattr__
        if self.model is None:
            set_(self, "preset", self.preset or "tiny")
            if self.preset not in PRESETS:
                raise ValueError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)} (or pass model=DIR)")
        elif self.preset is not None:
            raise ValueError("give a preset or a model directory, not both")
        set_(self, "backends", check_names(self.backends))
        set_(self, "batch_sizes", tuple(_ints(self.batch_sizes, "batch_sizes")))
        set_(self, "seq_lengths", tuple(_ints(self.seq_lengths, "seq_lengths", minimum=2)))
        set_(self, "sweep_lengths", tuple(_ints(self.sweep_lengths, "sweep_lengths", minimum=2)))
        for name, minimum in (("corpus_size", 1), ("corpus_min_tokens", 2), ("corpus_max_tokens", 2),
                              ("corpus_batch_size", 1), ("reps", 1), ("threads", 0), ("seed", 0)):
            _check_int(getattr(self, name), name, minimum)
        if self.corpus_min_tokens > self.corpus_max_tokens:
            raise ValueError(f"corpus_min_tokens ({self.corpus_min_tokens}) is above corpus_max_tokens "
                             f"({self.corpus_max_tokens})")
        t = self.time_budget_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ValueError(f"time_budget_s must be a positive number of seconds, got {t!r}")
        label = self.preset if self.model is None else Path(self.model).expanduser().resolve().name
        set_(self, "name", self.name or f"cpu-{label}")
        if not self.name or "/" in self.name or "\\" in self.name or self.name.startswith("."):
            raise ValueError(f"name {self.name!r} must be a plain file name (no folders)")
        set_(self, "out", str(self.out) if self.out is not None else str(default_out()))


def add_arguments(parser) -> None:
    """One --option per field, with its help and choices; sequences are comma-separated."""
    for f in fields(BenchOptions):  # defaults live in BenchOptions only: None here means "not given"
        kind = str(f.type)
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"help": f.metadata["help"], "default": None}
        if "choices" in f.metadata:
            kwargs["choices"] = list(f.metadata["choices"])
        elif "Sequence" in kind:
            kwargs["metavar"] = "A,B,..."
        elif kind.startswith("int"):
            kwargs["type"] = int
        elif kind.startswith("float"):
            kwargs["type"] = float
        parser.add_argument(flag, **kwargs)


def from_arguments(args) -> dict:
    """The keywords of run_bench from parsed arguments (those not given left to BenchOptions' defaults)."""
    return {f.name: getattr(args, f.name) for f in fields(BenchOptions) if getattr(args, f.name) is not None}


def _check_int(value, what: str, minimum: int) -> None:
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")


def _ints(values, what: str, minimum: int = 1) -> list[int]:
    if isinstance(values, (int, str)):
        values = [values] if isinstance(values, int) else [v for v in values.split(",") if v.strip()]
    try:
        values = [int(v) if isinstance(v, str) else v for v in values]
    except ValueError:
        raise ValueError(f"{what} must be integers, got {values!r}") from None
    if not values:
        raise ValueError(f"{what} is empty")
    for v in values:
        _check_int(v, what, minimum)
    if len(set(values)) != len(values):
        raise ValueError(f"{what} repeats a value: {values}")
    return [int(v) for v in values]
