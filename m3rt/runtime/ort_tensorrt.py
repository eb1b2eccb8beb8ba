"""onnxruntime's TensorRT execution provider: TensorRT engines built and cached by onnxruntime, fp16,
with the optimisation profiles of m3rt.runtime.profiles; IO binding as the CUDA backend.
Needs an artifact exported with attention="standard" (TensorRT cannot run com.microsoft ops; onnxruntime
would hand those nodes to CUDA and split the graph).
"""

from __future__ import annotations

from pathlib import Path

from m3rt.artifact import CACHE_DIRS, Manifest
from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.engine import EngineLimits
from m3rt.runtime.ort_cuda import OrtCudaEngine
from m3rt.runtime.profiles import profiles_for, shape_strings

PROVIDER = "TensorrtExecutionProvider"


class OrtTensorrtEngine(OrtCudaEngine):
    name = "onnxruntime-tensorrt"
    provider = PROVIDER

    @property
    def limits(self) -> EngineLimits:
        """The profiles onnxruntime builds engines for: batches past them would make it build another."""
        budget = self.config.max_batch_tokens or self.preferred_batch_tokens
        profiles = tuple(profiles_for(self.manifest.max_length, budget, self.config.batch_size))
        return EngineLimits(max_rows=self.config.batch_size, max_tokens=budget, buckets=profiles)

    @classmethod
    def unsuitable(cls, manifest: Manifest) -> str | None:
        why = super().unsuitable(manifest)  # what the CUDA provider cannot run, TensorRT's cannot either
        if why is not None:
            return why
        if manifest.attention != "standard":
            return (f"TensorRT needs an artifact exported with --attention standard (this one has "
                    f"{manifest.attention!r}: com.microsoft ops)")
        return None

    def providers(self, manifest: Manifest, config: RuntimeConfig) -> list:
        cache = Path(config.backend_options.engine_cache_dir or manifest.root / CACHE_DIRS[0])
        cache.mkdir(parents=True, exist_ok=True)
        limits = self.limits
        mins, opts, maxs = shape_strings(list(limits.buckets))
        options = {
            "device_id": config.backend_options.device_id,
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": mins,
            "trt_profile_opt_shapes": opts,
            "trt_profile_max_shapes": maxs,
        }
        return [(PROVIDER, options), ("CUDAExecutionProvider", {"device_id": config.backend_options.device_id})]
