"""CUDA layout and geometry, all on the host: launch shapes, broadcast strides, index positions,
axis views. Integer work on shapes and indices only; the data
stay on the device (``device_geometry`` copies a small int64 table there once per key).
"""
from functools import cache

import numba
import numpy as np
from numba import cuda

from ..cpu import to_host
from ..indices import index_range, size

# Launch shapes. Results never depend on them (grid-stride loops; every sum in index order).
# Numba's simulator starts a Python thread per CUDA thread, so there a launch of the
# grid-stride kernels has one warp (the loops cover the rest: the tests stay fast, and the
# loops run several times even on tiny arrays).
SIMULATED = numba.config.ENABLE_CUDASIM
WARP = 32                # fewest threads per block (tiny arrays: fewer idle threads)
THREADS = WARP if SIMULATED else 256    # most threads per block, elementwise and reductions
MAX_BLOCKS = 1 if SIMULATED else 4096   # grid-stride loops cover anything larger
TILE = 16                # the PAM GEMM's square tile (TILE x TILE threads per block)
SMALL_TILE = 8           # the tile when one side of the product is this small or smaller


def blocks_for(n, threads=THREADS):
    return max(1, min((n + threads - 1) // threads, MAX_BLOCKS))


def launch(n):
    """(blocks, threads per block) for a grid-stride loop over n items: a whole number of
    warps, at most THREADS per block (a few-element array gets one warp, not 256 threads)."""
    threads = min(THREADS, max(WARP, (n + WARP - 1) // WARP * WARP))
    return blocks_for(n, threads), threads


def as_flat(x, dtype):
    return x.reshape(x.size).view(dtype)


def broadcast_strides(shape, out_shape):
    """Element strides of a C-contiguous ``shape`` read as ``out_shape`` (0 on broadcast axes)."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides = [0] * len(shape)
    step = 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = step if shape[d] == out_shape[d] and shape[d] != 1 else 0
        step *= shape[d]
    return tuple(strides)


@cache
def device_geometry(shape, strides):
    """source_index's geometry on the device: a row of element ``strides`` per operand, then
    ``shape`` (all tuples). Copied to the device once per key: kernels only read it."""
    rows = strides + (shape,)
    return cuda.to_device(np.array(rows, np.int64).reshape(len(rows), len(shape)))


def same_shapes(operands):
    """The geometry of operands that all have the output's shape: no columns (source_index's
    fast path), one per operand count."""
    return device_geometry((), ((),) * operands)


@cache
def broadcast_geometry(out_shape, shapes):
    """The geometry of operands of ``shapes`` (tuples) broadcast to ``out_shape``."""
    if all(s == out_shape for s in shapes):
        return same_shapes(len(shapes))
    return device_geometry(out_shape, tuple(broadcast_strides(s, out_shape) for s in shapes))


def flat_positions(shape):
    """Each element's flat position, as an int64 host array of ``shape`` (made once per call
    of an op, whatever number of parts it indexes)."""
    return index_range(size(shape)).astype(np.int64, copy=False).reshape(shape)


def positions(every, idx):
    """The flat positions that ``idx`` reads from an array, given its ``flat_positions``.

    Integer work on the index alone, on the host (idx holds ints, slices and integer
    arrays, on the host or the device); the data stay on the device.
    """
    idx = tuple(map(to_host, idx)) if isinstance(idx, tuple) else to_host(idx)
    return np.ascontiguousarray(every[idx])


def axis_view(x, axis):
    """x as (outer, n, inner) around ``axis`` (None: all elements as one axis)."""
    shape = tuple(x.shape)
    if axis is None:
        return x.reshape(1, x.size, 1)
    axis %= len(shape)
    return x.reshape(size(shape[:axis]), shape[axis], size(shape[axis + 1:]))


def axis_slices(shape, sizes, axis):
    """The index of each consecutive part of ``sizes`` along ``axis``."""
    axis %= len(shape)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(slice(None),) * axis + (slice(starts[p], starts[p + 1]),) for p in range(len(sizes))]
