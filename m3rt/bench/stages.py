"""Where an m3rt encode call spends its time: the stage timings the runtime's pipeline records itself."""

from __future__ import annotations

from m3rt.runtime.pipeline import STAGES


def stage_split(runtime, texts: list[str], batch_size: int, max_length: int) -> dict:
    """Seconds and share per stage for encoding `texts` with all three outputs."""
    encoded = runtime.encode_native(texts, batch_size=batch_size, max_length=max_length, return_dense=True,
                                    return_sparse=True, return_colbert_vecs=True)
    seconds = {k: encoded.timings.get(k, 0.0) for k in STAGES}
    total = sum(seconds.values())
    return {"seconds": seconds, "share": {k: v / total for k, v in seconds.items()}, "total_s": total}
