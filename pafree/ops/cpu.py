"""Numba CPU kernels: flat loops over int32 views that call the bit logic of bits.py.

Each op has a serial and a parallel (prange) kernel; arrays below PARALLEL_MIN
elements take the serial one, where waking threads would cost more than the
work (on a busy machine, milliseconds per call). The two are separate Python
functions, so their disk-cache entries stay apart.
"""
import numpy as np
from numba import prange

from . import bits, elementwise
from .jit import cpu_kernel

PARALLEL_MIN = 1 << 16


def unary_kernels(fn, name):
    """(serial, parallel) kernels computing out[i] = fn(x[i])."""
    @cpu_kernel(name=f"{name}_serial")
    def serial(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    @cpu_kernel(parallel=True, name=name)
    def parallel(x, out):
        for i in prange(x.size):
            out[i] = fn(x[i])
    return serial, parallel


def binary_kernels(fn, name):
    """(serial, parallel) kernels computing out[i] = fn(a[i], b[i])."""
    @cpu_kernel(name=f"{name}_serial")
    def serial(a, b, out):
        for i in range(a.size):
            out[i] = fn(a[i], b[i])

    @cpu_kernel(parallel=True, name=name)
    def parallel(a, b, out):
        for i in prange(a.size):
            out[i] = fn(a[i], b[i])
    return serial, parallel


UNARY = {name: unary_kernels(getattr(bits, name), name) for name in elementwise.UNARY}
BINARY = {name: binary_kernels(getattr(bits, name), name) for name in elementwise.BINARY}


def float32_array(x, op):
    """x as a C-contiguous float32 ndarray (0-d stays 0-d); integers, booleans and
    float64 convert (float64 rounds to nearest), anything else raises TypeError."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{op}: expected real numbers, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")


def is_device_array(x):
    """True for numba CUDA device arrays, real or simulated (the simulator's lack
    ``__cuda_array_interface__``; both have copy_to_host)."""
    return hasattr(x, "copy_to_host")


def to_host(x):
    """x as a host ndarray (one device-to-host copy for a device array)."""
    return x.copy_to_host() if is_device_array(x) else x


def as_bits(arr, shape):
    """Flat int32 view of a float32 array broadcast to ``shape`` (copied only if broadcast)."""
    if arr.shape != shape:
        arr = np.ascontiguousarray(np.broadcast_to(arr, shape))
    return arr.reshape(-1).view(np.int32)


def unary(name, x):
    x = float32_array(x, name)
    out = np.empty(x.shape, np.float32)
    if x.size:
        kernel = UNARY[name][x.size >= PARALLEL_MIN]
        kernel(x.reshape(-1).view(np.int32), out.reshape(-1).view(np.int32))
    return out


def binary(name, a, b):
    a = float32_array(a, name)
    b = float32_array(b, name)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = np.empty(shape, np.float32)
    if out.size:
        kernel = BINARY[name][out.size >= PARALLEL_MIN]
        kernel(as_bits(a, shape), as_bits(b, shape), out.reshape(-1).view(np.int32))
    return out
