"""Host-side pieces shared by the CPU GEMMs: operand stacks, batch maps, workspaces and
the split of the output into tasks."""
import threading

import numba
import numpy as np

from ..jit import cpu_kernel
from ..indices import size

_workspace = threading.local()


def workspace(name, shape):
    """An int32 array of ``shape`` carved from a per-thread buffer reused between calls."""
    count = size(shape)
    buf = getattr(_workspace, name, None)
    if buf is None or buf.size < count:
        buf = np.empty(max(count, 1), np.int32)
        setattr(_workspace, name, buf)
    return buf[:count].reshape(shape)


def float32_view(x, op):
    """x as a float32 ndarray, keeping its strides (a transposed view stays a view)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{op}: expected real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def stack(x, batch, rows, cols):
    """x (..., rows, cols) float32 as an int32 stack (size(batch), rows, cols): a view
    unless the reshape of a strided batch needs a copy."""
    return x.reshape((size(batch), rows, cols)).view(np.int32)


@cpu_kernel()
def batch_index(shape, batch, index):
    """index[z] = the position, in the C-ordered stack of an operand of batch ``shape``,
    of the operand of product z of the broadcast ``batch`` (int64 arrays of one length)."""
    for z in range(index.size):
        rest = z
        position = 0
        step = 1
        for axis in range(batch.size - 1, -1, -1):
            coordinate = rest % batch[axis]
            rest = rest // batch[axis]
            if shape[axis] != 1:
                position += coordinate * step
            step *= shape[axis]
        index[z] = position


def broadcast_index(shape, batch):
    """For each product of the broadcast ``batch``, the index of its operand in the stack
    of batch ``shape`` (int64)."""
    padded = (1,) * (len(batch) - len(shape)) + tuple(shape)
    index = np.empty(size(batch), np.int64)
    batch_index(np.array(padded, np.int64), np.array(batch, np.int64), index)
    return index


def row_block(n_row_panels, tasks_per_row_block, most):
    """Micro-panels per task: ``most``, fewer while that leaves under four tasks per
    thread. Only the output is split, never the sum, so the bits do not change."""
    tasks = n_row_panels * tasks_per_row_block
    return max(1, min(most, tasks // (4 * numba.get_num_threads())))
