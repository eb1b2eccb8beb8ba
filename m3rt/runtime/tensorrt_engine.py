"""Native TensorRT: the artifact's model.plan (built by `m3rt build-engine`), one execution context per
optimisation profile, set_input_shape per call, cuda-python device buffers with pinned host staging, one
CUDA stream.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import numpy as np

from m3rt.artifact import Manifest
from m3rt.errors import ArtifactError, BackendError
from m3rt.runtime.config import RuntimeConfig
from m3rt.runtime.profiles import INPUTS, Profile, pick


class TensorRTEngine:
    name = "tensorrt"
    batch_tokens = 16384

    def __init__(self, manifest: Manifest, config: RuntimeConfig):
        import tensorrt as trt

        from m3rt.export.tensorrt_build import ENGINE, ENGINE_INFO, gpu_name
        from m3rt.runtime.cuda_memory import Buffer, cudart, cudart_call

        plan, info_path = manifest.root / ENGINE, manifest.root / ENGINE_INFO
        rebuild = f"m3rt build-engine {manifest.root}"
        if not plan.is_file() or not info_path.is_file():
            raise ArtifactError(f"{manifest.root}: no TensorRT engine; build one with `{rebuild}`")
        info = json.loads(info_path.read_text())
        here = {"tensorrt": trt.__version__, "gpu": gpu_name(config.device_id)}
        for key, value in here.items():
            if info.get(key) != value:
                raise ArtifactError(f"{plan}: built for {key} {info.get(key)!r}, this machine has {value!r}; "
                                    f"rebuild it with `{rebuild}`")
        self._rt, self._call = cudart(), cudart_call
        self._call(self._rt.cudaSetDevice(config.device_id))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{plan}: TensorRT cannot load the engine; rebuild it with `{rebuild}`")
        self.profiles = [Profile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"])) for p in info["profiles"]]
        self.stream = self._call(self._rt.cudaStreamCreate())
        self._stream_handle = int(self.stream)  # TensorRT takes the raw handle, cuda-python the object
        self.contexts = []
        for i in range(len(self.profiles)):
            ctx = self.engine.create_execution_context()
            ctx.set_optimization_profile_async(i, self._stream_handle)
            self.contexts.append(ctx)
        self.buffers = {name: Buffer() for name in self._tensor_names()}
        self._dtypes = {n: trt.nptype(self.engine.get_tensor_dtype(n)) for n in self.buffers}
        self._lock = threading.Lock()  # one stream and one set of buffers: calls take turns

    def _tensor_names(self):
        return [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        rt, call = self._rt, self._call
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        batch, seq = input_ids.shape
        with self._lock:
            ctx = self.contexts[pick(self.profiles, batch, seq)]
            for name, array in zip(INPUTS, (input_ids, attention_mask)):
                array = np.ascontiguousarray(array, dtype=self._dtypes[name])
                buf = self.buffers[name]
                buf.ensure(array.nbytes)
                buf.host(array.shape, array.dtype)[...] = array
                call(rt.cudaMemcpyAsync(buf.device, buf.host_ptr, array.nbytes, h2d, self.stream))
                ctx.set_input_shape(name, array.shape)
                ctx.set_tensor_address(name, buf.device)
            shapes = {}
            for name in self.buffers:
                if name in INPUTS:
                    continue
                shape = tuple(ctx.get_tensor_shape(name))
                shapes[name] = shape
                buf = self.buffers[name]
                buf.ensure(max(1, int(np.prod(shape))) * np.dtype(self._dtypes[name]).itemsize)
                ctx.set_tensor_address(name, buf.device)
            if not ctx.execute_async_v3(self._stream_handle):
                raise BackendError("TensorRT execution failed")
            result = {}
            for name in outputs:  # only the outputs asked for come back to the host
                buf, nbytes = self.buffers[name], int(np.prod(shapes[name])) * np.dtype(self._dtypes[name]).itemsize
                call(rt.cudaMemcpyAsync(buf.host_ptr, buf.device, nbytes, d2h, self.stream))
            call(rt.cudaStreamSynchronize(self.stream))
            for name in outputs:
                result[name] = self.buffers[name].host(shapes[name], self._dtypes[name]).copy()
        return result


def unsuitable(manifest: Manifest) -> str | None:
    from m3rt.export.tensorrt_build import ENGINE

    if not (manifest.root / ENGINE).is_file():
        return f"the artifact has no TensorRT engine (build one with `m3rt build-engine {manifest.root}`)"
    return None


def available() -> str | None:
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
