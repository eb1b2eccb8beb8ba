"""`m3rt bench`: end-to-end encode latency and throughput of m3rt against FlagEmbedding on the CPU.

    from m3rt.bench import run_bench
    run_bench(preset="tiny", out="bench/results")

One run times every backend on the same inputs, interleaved, and writes <name>.json, .md and .png.
Nothing here imports torch until the FlagEmbedding backend (or a model build / export) needs it.
"""

from m3rt.bench.runner import run_bench

__all__ = ["run_bench"]
