"""Device and pinned host buffers through cuda-python (NVIDIA's bindings; wheels, no compiler needed)."""

from __future__ import annotations

import ctypes

import numpy as np

from m3rt.errors import BackendError


def cudart():
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError:
            raise BackendError("the TensorRT backend needs cuda-python (pip install cuda-python)") from None
    return runtime


def cudart_call(result):
    """cuda-python returns (error, *values); raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else tuple(values) or None


class Buffer:
    """A device buffer and a pinned host buffer of the same size, grown on demand."""

    def __init__(self):
        self.nbytes = 0
        self.device = 0
        self.host_ptr = 0

    def ensure(self, nbytes: int) -> None:
        if nbytes <= self.nbytes:
            return
        rt = cudart()
        self.free()
        self.device = cudart_call(rt.cudaMalloc(nbytes))
        self.host_ptr = cudart_call(rt.cudaMallocHost(nbytes))
        self.nbytes = nbytes

    def host(self, shape, dtype) -> np.ndarray:
        count = int(np.prod(shape))
        raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(int(self.host_ptr))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def free(self) -> None:
        if self.nbytes:
            rt = cudart()
            cudart_call(rt.cudaFree(self.device))
            cudart_call(rt.cudaFreeHost(self.host_ptr))
            self.nbytes, self.device, self.host_ptr = 0, 0, 0


class DeviceScratch:
    """One device allocation, grown on demand (TensorRT's per-context activation memory, shared)."""

    def __init__(self):
        self.nbytes = 0
        self.ptr = 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr = cudart_call(cudart().cudaMalloc(max(nbytes, 1)))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.nbytes:
            cudart_call(cudart().cudaFree(self.ptr))
            self.nbytes, self.ptr = 0, 0


def gpu_name(device: int = 0) -> str:
    props = cudart_call(cudart().cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")
