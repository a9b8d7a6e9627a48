"""Numba CPU kernels: flat loops over int32 views that call the bit logic of bits.py
(int16 / int8 views and the bfloat16, float16, float8_e5m2 instances of that logic for
those dtypes).

Each op has a serial and a parallel (prange) kernel; arrays below PARALLEL_MIN
elements take the serial one, where waking threads would cost more than the
work (on a busy machine, milliseconds per call). The two are separate Python
functions, so their disk-cache entries stay apart. Every loop is compiled for the vector
width tuning.py picks for this CPU (on Intel AVX-512 LLVM would take 256 bits, and a
one-thread pass over 10^7 values then took 3-12 % longer: results/benchmarks-*-intel.md).
"""
import ml_dtypes
import numpy as np
from numba import prange

from . import bits, elementwise
from .jit import cpu_kernel, prefer_vector_width
from .tuning import VECTOR_BITS_HERE as VECTOR_BITS

PARALLEL_MIN = 1 << 16


def unary_kernels(fn, name, vector_bits=VECTOR_BITS):
    """(serial, parallel) kernels computing out[i] = fn(x[i])."""
    @cpu_kernel(name=f"{name}_serial")
    def serial(x, out):
        prefer_vector_width(vector_bits)
        for i in range(x.size):
            out[i] = fn(x[i])

    @cpu_kernel(parallel=True, name=name)
    def parallel(x, out):
        for i in prange(x.size):
            prefer_vector_width(vector_bits)
            out[i] = fn(x[i])
    return serial, parallel


def binary_kernels(fn, name, vector_bits=VECTOR_BITS):
    """(serial, parallel) kernels computing out[i] = fn(a[i], b[i])."""
    @cpu_kernel(name=f"{name}_serial")
    def serial(a, b, out):
        prefer_vector_width(vector_bits)
        for i in range(a.size):
            out[i] = fn(a[i], b[i])

    @cpu_kernel(parallel=True, name=name)
    def parallel(a, b, out):
        for i in prange(a.size):
            prefer_vector_width(vector_bits)
            out[i] = fn(a[i], b[i])
    return serial, parallel


def format_kernels(fmt, suffix=""):
    """({name: (serial, parallel)} unary, the same binary) for the bit logic ``fmt``."""
    return ({name: unary_kernels(getattr(fmt, name), name + suffix) for name in elementwise.UNARY},
            {name: binary_kernels(getattr(fmt, name), name + suffix) for name in elementwise.BINARY})


UNARY, BINARY = format_kernels(bits.FLOAT32)
# the narrow formats (SPEC section 7): dtype -> (unary, binary) kernels on int16 / int8 views
LOW_PRECISION = {np.dtype(ml_dtypes.bfloat16): format_kernels(bits.BFLOAT16, "_bf16"),
                 np.dtype(np.float16): format_kernels(bits.FLOAT16, "_fp16"),
                 np.dtype(ml_dtypes.float8_e5m2): format_kernels(bits.FLOAT8_E5M2, "_e5m2")}


def rounding_kernel(fmt, name, vector_bits=VECTOR_BITS):
    """The kernel rounding float32 bits to the format ``fmt`` and back: out[i] holds the
    float32 bits of x[i] rounded to the format (nearest even; flushed below its normal
    range, inf above). Integer work only (bits.from_float32, bits.to_float32)."""
    narrow, widen = fmt.from_float32, fmt.to_float32

    @cpu_kernel(name=name)
    def kernel(x, out):
        prefer_vector_width(vector_bits)
        for i in range(x.size):
            out[i] = widen(narrow(x[i]))
    return kernel


ROUNDING = {"bf16": rounding_kernel(bits.BFLOAT16, "round_bf16"),
            "fp16": rounding_kernel(bits.FLOAT16, "round_fp16")}


def round_to(x, precision):
    """float32 x rounded to the precision's format ("bf16" or "fp16"; "fp32": x itself),
    as float32 values (every value of those formats is a float32)."""
    if precision == "fp32":
        return x
    x = float32_array(x, "round_to")
    out = np.empty(x.shape, np.float32)
    ROUNDING[precision](as_bits(x, x.shape), as_bits(out, out.shape))
    return out


def low_precision_dtype(arrays, op):
    """The narrow format of the inputs (None for float32 work): the dtype of every array
    input when one is bfloat16, float16 or float8_e5m2; Python scalars join in that format."""
    dtypes = {np.asarray(x).dtype for x in arrays if isinstance(x, (np.ndarray, np.generic))}
    low = dtypes & LOW_PRECISION.keys()
    if not low:
        return None
    if len(dtypes) > 1:
        raise TypeError(f"{op}: mixed dtypes {sorted(map(str, dtypes))}; convert to one format")
    return low.pop()


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
    """Flat signed-integer view (int32; int16, int8 for the narrow formats) of an array
    broadcast to ``shape`` (copied only if broadcast)."""
    if arr.shape != shape:
        arr = np.ascontiguousarray(np.broadcast_to(arr, shape))
    return arr.reshape(-1).view(f"i{arr.itemsize}")


def unary(name, x):
    dtype = low_precision_dtype([x], name)
    if dtype is None:
        dtype, kernels, x = np.dtype(np.float32), UNARY, float32_array(x, name)
    else:
        kernels, x = LOW_PRECISION[dtype][0], np.asarray(x, dtype=dtype, order="C")
    out = np.empty(x.shape, dtype)
    if x.size:
        kernel = kernels[name][x.size >= PARALLEL_MIN]
        kernel(as_bits(x, x.shape), as_bits(out, out.shape))
    return out


def binary(name, a, b):
    dtype = low_precision_dtype([a, b], name)
    if dtype is None:
        dtype, kernels = np.dtype(np.float32), BINARY
        a, b = float32_array(a, name), float32_array(b, name)
    else:
        kernels = LOW_PRECISION[dtype][1]
        a, b = np.asarray(a, dtype=dtype, order="C"), np.asarray(b, dtype=dtype, order="C")
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = np.empty(shape, dtype)
    if out.size:
        kernel = kernels[name][out.size >= PARALLEL_MIN]
        kernel(as_bits(a, shape), as_bits(b, shape), as_bits(out, shape))
    return out
