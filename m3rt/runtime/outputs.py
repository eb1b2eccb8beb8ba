"""`Outputs`: which of BGE-M3's three outputs a call computes. The one translation between FlagEmbedding's
`return_*` flags, the names m3rt uses ("dense", "sparse", "colbert") and the graph's output names, and the one
place that refuses a call asking for nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from m3rt.artifact import OUTPUT_NAMES

KINDS = ("dense", "sparse", "colbert")
# FlagEmbedding's argument per kind, and the graph output it is read from.
FLAGS = {"dense": "return_dense", "sparse": "return_sparse", "colbert": "return_colbert_vecs"}
GRAPH_OUTPUTS = dict(zip(KINDS, OUTPUT_NAMES))


@dataclass(frozen=True)
class Outputs:
    dense: bool = False
    sparse: bool = False
    colbert: bool = False

    def __post_init__(self):
        for kind in KINDS:
            value = getattr(self, kind)
            if not isinstance(value, bool):
                raise TypeError(f"{FLAGS[kind]} must be a bool, got {value!r}")
        if not (self.dense or self.sparse or self.colbert):
            raise ValueError("nothing to return: set one of return_dense, return_sparse, return_colbert_vecs")

    @classmethod
    def of(cls, names: Iterable[str]) -> "Outputs":
        """From kind names ("dense", "sparse", "colbert")."""
        names = set(names)
        unknown = sorted(names - set(KINDS))
        if unknown:
            raise ValueError(f"unknown output(s) {unknown}; known: {', '.join(KINDS)}")
        return cls(**{kind: kind in names for kind in KINDS})

    @classmethod
    def chosen(cls, dense: bool = False, sparse: bool = False, colbert: bool = False) -> "Outputs":
        """What a command writes: the outputs chosen, dense when none is."""
        return cls(dense=bool(dense) or not (sparse or colbert), sparse=bool(sparse), colbert=bool(colbert))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(kind for kind in KINDS if getattr(self, kind))

    @property
    def graph_names(self) -> tuple[str, ...]:
        """The graph outputs to fetch from the engine."""
        return tuple(GRAPH_OUTPUTS[kind] for kind in self.names)

    def flags(self) -> dict[str, bool]:
        """FlagEmbedding's return_* keywords."""
        return {FLAGS[kind]: getattr(self, kind) for kind in KINDS}

    def __contains__(self, kind: str) -> bool:
        return kind in KINDS and getattr(self, kind)

    def __or__(self, other: "Outputs") -> "Outputs":
        return Outputs(*(getattr(self, k) or getattr(other, k) for k in KINDS))
