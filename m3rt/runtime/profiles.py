"""TensorRT optimisation profiles: ranges of (batch, sequence) an engine is built for.

One profile per sequence bucket, so a short input runs kernels tuned for short inputs instead of paying for
8192-token ones. The runtime's batches respect batch_size and rows x longest <= max_batch_tokens, so a
batch whose longest row is in (lo, hi] has at most min(batch_size, max_batch_tokens // lo) rows (at least 1);
each bucket's max batch is that, and every batch the runtime plans fits exactly one profile.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE_BUCKETS = (64, 256, 1024, 8192)
INPUTS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Profile:
    min: tuple[int, int]  # (batch, sequence)
    opt: tuple[int, int]
    max: tuple[int, int]

    def fits(self, batch: int, seq: int) -> bool:
        return self.min[0] <= batch <= self.max[0] and self.min[1] <= seq <= self.max[1]


def profiles_for(max_length: int, max_batch_tokens: int, batch_size: int) -> list[Profile]:
    edges = [s for s in SEQUENCE_BUCKETS if s < max_length] + [max_length]
    profiles, lo = [], 1
    for hi in edges:
        rows = max(1, min(batch_size, max_batch_tokens // lo))
        opt_rows = max(1, min(rows, max_batch_tokens // hi, 32))
        profiles.append(Profile(min=(1, lo), opt=(opt_rows, hi), max=(rows, hi)))
        lo = hi + 1
    return profiles


def pick(profiles: list[Profile], batch: int, seq: int) -> int:
    """Index of the profile for a [batch, seq] input; a clear error when none covers it."""
    for i, p in enumerate(profiles):
        if p.fits(batch, seq):
            return i
    ranges = "; ".join(f"batch {p.min[0]}-{p.max[0]} x seq {p.min[1]}-{p.max[1]}" for p in profiles)
    raise ValueError(f"no engine profile covers batch {batch} x sequence {seq} (built for: {ranges}); "
                     "rebuild the engine with a larger max_batch_tokens / batch_size")


def shape_strings(profiles: list[Profile]) -> tuple[str, str, str]:
    """onnxruntime TensorRT EP's trt_profile_{min,opt,max}_shapes: inputs repeated once per profile."""
    def one(attr):
        return ",".join(f"{name}:{getattr(p, attr)[0]}x{getattr(p, attr)[1]}" for p in profiles for name in INPUTS)

    return one("min"), one("opt"), one("max")


def limits_from_engine_info(info: dict):
    """The EngineLimits of a built engine, from its engine.json (what `m3rt build-engine` wrote)."""
    from m3rt.runtime.engine import EngineLimits

    profiles = tuple(Profile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"])) for p in info["profiles"])
    return EngineLimits(max_rows=int(info["batch_size"]), max_tokens=int(info["max_batch_tokens"]), buckets=profiles)
