"""Native TensorRT: the artifact's model.plan (built by `m3rt build-engine`), one execution context per
optimisation profile sharing ONE scratch allocation (calls take turns, so one is enough), set_input_shape
per call, cuda-python device buffers with pinned host staging, one CUDA stream. Every TensorRT call that
reports success is checked; the limits the engine was built for (engine.json) bound the batch planner.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import numpy as np

from m3rt.artifact import ENGINE, ENGINE_INFO, Manifest
from m3rt.errors import ArtifactError, BackendError
from m3rt.runtime.engine import Engine, EngineLimits
from m3rt.runtime.profiles import INPUTS, limits_from_engine_info, pick


def _check(ok, what: str) -> None:
    if not ok:
        raise BackendError(f"TensorRT: {what} failed (see TensorRT's log above)")


class TensorRTEngine(Engine):
    name = "tensorrt"
    preferred_batch_tokens = 16384
    on_gpu = True

    @classmethod
    def missing(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "the tensorrt package is not installed (pip install tensorrt, on a machine with an NVIDIA GPU)"
        try:
            from m3rt.runtime.cuda_memory import cudart, cudart_call

            if cudart_call(cudart().cudaGetDeviceCount()) < 1:
                return "no CUDA device is visible"
        except Exception as e:  # noqa: BLE001 - any failure here means the backend cannot start; say why
            return f"CUDA is not usable ({e})"
        return None

    @classmethod
    def unsuitable(cls, manifest: Manifest) -> str | None:
        if not (manifest.root / ENGINE).is_file():
            return f"the artifact has no TensorRT engine (build one with `m3rt build-engine {manifest.root}`)"
        return None

    def __init__(self, manifest: Manifest, config):
        super().__init__(manifest, config)
        self.rebuild = f"m3rt build-engine {manifest.root}"
        info_path = manifest.root / ENGINE_INFO
        if not info_path.is_file():
            raise ArtifactError(f"{manifest.root}: no {ENGINE_INFO} beside the engine; build one with `{self.rebuild}`")
        self.info = json.loads(info_path.read_text())
        self._limits = limits_from_engine_info(self.info)

    @property
    def limits(self) -> EngineLimits:
        return self._limits

    def _open(self) -> None:
        import tensorrt as trt

        from m3rt.runtime.cuda_memory import Buffer, DeviceScratch, cudart, cudart_call, gpu_name

        plan = self.manifest.root / ENGINE
        here = {"tensorrt": trt.__version__, "gpu": gpu_name(self.config.backend_options.device_id)}
        for key, value in here.items():
            if self.info.get(key) != value:
                raise ArtifactError(f"{plan}: built for {key} {self.info.get(key)!r}, this machine has {value!r}; "
                                    f"rebuild it with `{self.rebuild}`")
        self._rt, self._call = cudart(), cudart_call
        self._call(self._rt.cudaSetDevice(self.config.backend_options.device_id))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{plan}: TensorRT cannot load the engine; rebuild it with `{self.rebuild}`")
        self.stream = self._call(self._rt.cudaStreamCreate())
        self._stream_handle = int(self.stream)  # TensorRT takes the raw handle, cuda-python the object
        n_profiles = self.engine.num_optimization_profiles
        _check(n_profiles == len(self._limits.buckets),
               f"the engine's {n_profiles} profiles against {len(self._limits.buckets)} in {ENGINE_INFO}")
        self.scratch = DeviceScratch()
        self.scratch.ensure(max(self._memory_size(i) for i in range(n_profiles)))
        self.contexts = [self._context(trt, i) for i in range(n_profiles)]
        self.buffers = {name: Buffer() for name in self._tensor_names()}
        self._dtypes = {n: trt.nptype(self.engine.get_tensor_dtype(n)) for n in self.buffers}
        self._lock = threading.Lock()  # one stream, one scratch and one set of buffers: calls take turns

    def _memory_size(self, profile: int) -> int:
        if hasattr(self.engine, "get_device_memory_size_for_profile_v2"):
            return int(self.engine.get_device_memory_size_for_profile_v2(profile))
        return int(getattr(self.engine, "device_memory_size_v2", None) or self.engine.device_memory_size)

    def _context(self, trt, profile: int):
        """A context for `profile` on the shared scratch (TensorRT would give each context its own, sized for
        the largest profile)."""
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        if strategy is not None:
            ctx = self.engine.create_execution_context(strategy.USER_MANAGED)
        else:
            ctx = self.engine.create_execution_context_without_device_memory()
        _check(ctx is not None, f"creating the execution context of profile {profile}")
        if hasattr(ctx, "set_device_memory"):
            ctx.set_device_memory(self.scratch.ptr, self.scratch.nbytes)
        else:
            ctx.device_memory = self.scratch.ptr
        _check(ctx.set_optimization_profile_async(profile, self._stream_handle), f"selecting profile {profile}")
        return ctx

    def _close(self) -> None:
        with self._lock:
            self.contexts = []
            for buf in self.buffers.values():
                buf.free()
            self.scratch.free()
            self._call(self._rt.cudaStreamDestroy(self.stream))
            self.engine = None

    def _tensor_names(self):
        return [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        rt, call = self._rt, self._call
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        batch, seq = input_ids.shape
        with self._lock:
            ctx = self.contexts[pick(list(self._limits.buckets), batch, seq)]
            for name, array in zip(INPUTS, (input_ids, attention_mask)):
                array = np.ascontiguousarray(array, dtype=self._dtypes[name])
                buf = self.buffers[name]
                buf.ensure(array.nbytes)
                buf.host(array.shape, array.dtype)[...] = array
                call(rt.cudaMemcpyAsync(buf.device, buf.host_ptr, array.nbytes, h2d, self.stream))
                _check(ctx.set_input_shape(name, array.shape), f"set_input_shape({name}, {array.shape})")
                _check(ctx.set_tensor_address(name, buf.device), f"set_tensor_address({name})")
            shapes = {}
            for name in self.buffers:
                if name in INPUTS:
                    continue
                shape = tuple(ctx.get_tensor_shape(name))
                _check(all(d >= 0 for d in shape), f"the shape of {name} ({shape})")
                shapes[name] = shape
                buf = self.buffers[name]
                buf.ensure(max(1, int(np.prod(shape))) * np.dtype(self._dtypes[name]).itemsize)
                _check(ctx.set_tensor_address(name, buf.device), f"set_tensor_address({name})")
            _check(ctx.execute_async_v3(self._stream_handle), f"execute_async_v3 (batch {batch} x {seq})")
            result = {}
            for name in outputs:  # only the outputs asked for come back to the host
                buf, nbytes = self.buffers[name], int(np.prod(shapes[name])) * np.dtype(self._dtypes[name]).itemsize
                call(rt.cudaMemcpyAsync(buf.host_ptr, buf.device, nbytes, d2h, self.stream))
            call(rt.cudaStreamSynchronize(self.stream))
            for name in outputs:
                result[name] = self.buffers[name].host(shapes[name], self._dtypes[name]).copy()
        return result
