"""Numba CPU kernels: flat loops over int32 views that call the bit logic of bits.py."""
import numpy as np
from numba import prange

from . import bits
from .jit import cpu_kernel


def unary_kernel(fn, name):
    @cpu_kernel(parallel=True, name=name)
    def kernel(x, out):
        for i in prange(x.size):
            out[i] = fn(x[i])
    return kernel


def binary_kernel(fn, name):
    @cpu_kernel(parallel=True, name=name)
    def kernel(a, b, out):
        for i in prange(a.size):
            out[i] = fn(a[i], b[i])
    return kernel


UNARY = {name: unary_kernel(getattr(bits, name), name) for name in (
    "paexp2", "palog2", "pasqrt", "paexp", "palog",
    "paexp2_slope", "palog2_slope", "pasqrt_slope")}
BINARY = {name: binary_kernel(getattr(bits, name), name) for name in (
    "pam", "pad", "papow", "pam_slope", "pad_slope_a", "pad_slope_b")}


def float32_array(x, op):
    """x as a C-contiguous float32 ndarray (0-d stays 0-d); integers, booleans and
    float64 convert (float64 rounds to nearest), anything else raises TypeError."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{op}: expected real numbers, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")


def as_bits(arr, shape):
    """Flat int32 view of a float32 array broadcast to ``shape`` (copied only if broadcast)."""
    if arr.shape != shape:
        arr = np.ascontiguousarray(np.broadcast_to(arr, shape))
    return arr.reshape(-1).view(np.int32)


def unary(name, x):
    x = float32_array(x, name)
    out = np.empty(x.shape, np.float32)
    if x.size:
        UNARY[name](x.reshape(-1).view(np.int32), out.reshape(-1).view(np.int32))
    return out


def binary(name, a, b):
    a = float32_array(a, name)
    b = float32_array(b, name)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = np.empty(shape, np.float32)
    if out.size:
        BINARY[name](as_bits(a, shape), as_bits(b, shape), out.reshape(-1).view(np.int32))
    return out
