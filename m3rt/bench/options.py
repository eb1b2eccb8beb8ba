"""BenchOptions: every option of `m3rt bench` / run_bench in one dataclass, checked on construction. The CLI
is generated from its fields (their help and choices in the field metadata), so the two cannot drift."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from m3rt.bench.backends import BACKENDS, check_names
from m3rt.bench.models import PRESETS
from m3rt.options import option


def default_out() -> Path:
    """Results go to the user's cache, never into a source tree (bench/results holds the committed ones)."""
    from m3rt.artifact import cache_dir

    return cache_dir() / "bench" / "results"


@dataclass(frozen=True)
class BenchOptions:
    preset: str | None = option(None, "TEST model to build: tiny (seconds), the bge-m3 shape with random weights "
                                      "(~2.3 GB), or bge-m3-w6 (its width at 6 layers); default tiny unless --model "
                                      "is given", choices=PRESETS)
    model: str | None = option(None, "a local model directory in the BAAI/bge-m3 layout instead of a preset")
    out: str | None = option(None, "folder for the results",
                           default_help="~/.cache/m3rt/bench/results, or $M3RT_CACHE_DIR/bench/results")
    work_dir: str | None = option(None, "cache of the model and artifacts", default_help="~/.cache/m3rt/bench/<preset>")
    backends: Sequence[str] = option(BACKENDS, "comma-separated; the first is the baseline")
    batch_sizes: Sequence[int] = option((1, 8), "latency grid, rows per call")
    seq_lengths: Sequence[int] = option((128, 512), "latency grid, tokens per text")
    sweep_lengths: Sequence[int] = option((32, 128, 512), "batch-1 latency plot, tokens")
    corpus_size: int = option(200, "texts in the throughput corpus")
    corpus_min_tokens: int = option(8, "shortest corpus text, tokens")
    corpus_max_tokens: int = option(512, "longest corpus text, tokens")
    corpus_batch_size: int = option(32, "batch_size of the corpus encode call")
    reps: int = option(10, "timed calls per backend and point")
    time_budget_s: float = option(60.0, "stop a backend's timed calls at a point after this many seconds")
    threads: int = option(0, "torch and onnxruntime threads; 0: their defaults")
    seed: int = option(0, "seed of the generated texts")
    name: str | None = option(None, "result file name without extension", default_help="cpu-<preset or model folder>")

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
