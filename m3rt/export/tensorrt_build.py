"""Build a TensorRT engine from an fp16 (or fp32) artifact with "standard" attention, with the TensorRT
Python API: FP16, one optimisation profile per sequence bucket (runtime/profiles.py), a timing cache reused
across builds. The engine and `engine.json` (TensorRT version, GPU, profiles) go into the artifact, and the
manifest is rewritten to list them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from m3rt.artifact import ENGINE, ENGINE_INFO, TIMING_CACHE, read_manifest, with_tensorrt_engine, write_manifest
from m3rt.errors import ArtifactError, BackendError
from m3rt.runtime.cuda_memory import gpu_name
from m3rt.runtime.profiles import INPUTS, profiles_for

log = logging.getLogger("m3rt.export")


def build_engine(artifact: str | Path, *, max_batch_tokens: int = 16384, batch_size: int = 256,
                 timing_cache: str | Path | None = None, workspace_gib: float = 8.0) -> Path:
    """Build `artifact`/model.plan and return its path."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError("building a TensorRT engine needs the `tensorrt` package (pip install tensorrt, "
                           "on a machine with an NVIDIA GPU)") from None
    manifest = read_manifest(artifact)
    if manifest.attention != "standard":
        raise ArtifactError(f"{manifest.root}: TensorRT needs an artifact exported with --attention standard")
    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(manifest.graph_path)):  # from the file: finds model.onnx.data beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"{manifest.graph_path}: TensorRT cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    cache_path = Path(timing_cache) if timing_cache else manifest.root / TIMING_CACHE
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profiles = profiles_for(manifest.max_length, max_batch_tokens, batch_size)
    for p in profiles:
        profile = builder.create_optimization_profile()
        for name in INPUTS:
            profile.set_shape(name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    log.info("building the TensorRT engine (%d profiles); this takes minutes", len(profiles))
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError("TensorRT failed to build the engine (see its log above)")
    engine_path = manifest.root / ENGINE
    engine_path.write_bytes(bytes(plan))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    info = {"tensorrt": trt.__version__, "gpu": gpu_name(), "max_batch_tokens": max_batch_tokens,
            "batch_size": batch_size, "profiles": [p.__dict__ for p in profiles],
            "build_seconds": round(time.perf_counter() - started, 1)}
    (manifest.root / ENGINE_INFO).write_text(json.dumps(info, indent=2) + "\n")
    write_manifest(manifest.root, with_tensorrt_engine(manifest, info))
    log.info("engine written to %s in %.0f s", engine_path, info["build_seconds"])
    return engine_path
