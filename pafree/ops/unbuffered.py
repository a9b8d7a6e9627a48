"""Broadcasting, reductions and scatter-adds that never enter numpy's buffered iterator.

numpy plans the buffers of a buffered iteration with double multiplies
(``npyiter_find_buffering_setup``) whenever the iteration has more than one
dimension after coalescing: every broadcasting ufunc, every axis reduction,
``np.where`` on broadcast operands, ``np.add.at``. The CPU backend of the
registry's shared kernels (add, sub, where, sum, max, integer_shift,
scatter_add) uses these instead:

- elementwise ops broadcast their operands into C-contiguous copies first
  (plain copies, no ufunc), so the ufunc runs numpy's one-dimensional loop;
- reductions are Numba kernels that add in numpy's order: numpy walks a
  C-contiguous array in C order with the output starting at 0 (add's identity);
  an inner reduced axis is summed by numpy's pairwise summation (8 accumulators,
  blocks of 128), an inner kept axis row by row. So the bits are numpy's.
"""
import numpy as np
from numba.extending import register_jitable

from .indices import size
from .jit import cpu_kernel

PAIRWISE_BLOCK = 128      # numpy's PW_BLOCKSIZE


def broadcast_contiguous(*arrays):
    """The arrays broadcast against each other, each as a C-contiguous array of the
    common shape (0-d arrays and scalars stay 0-d: a ufunc loops over them with stride 0)."""
    arrays = [np.asarray(a) for a in arrays]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return [a if a.ndim == 0 or (a.shape == shape and a.flags.c_contiguous)
            else np.ascontiguousarray(np.broadcast_to(a, shape)) for a in arrays]


def apply(ufunc, *arrays):
    """``ufunc(*arrays)`` with numpy's broadcasting, run as one flat loop."""
    return ufunc(*broadcast_contiguous(*arrays))


def where(cond, a, b):
    return np.where(*broadcast_contiguous(cond, a, b))


# --- reductions ------------------------------------------------------------------
@cpu_kernel(name="pairwise_block")
def _pairwise_block(x, start, n):
    """numpy's pairwise_sum_FLOAT for n <= 128: a plain loop below 8, else 8 accumulators."""
    a = x[start:start + n]       # a view indexed by loop counters: no wraparound checks
    if n < 8:
        res = np.float32(-0.0)   # numpy starts from -0: the sum of -0s is -0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    for i in range(8, n - n % 8, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(n - n % 8, n):
        res += a[i]
    return res


@cpu_kernel(name="pairwise_sum")
def pairwise_sum(x, start, n):
    """numpy's pairwise_sum_FLOAT over x[start:start + n] (float32 adds in its order).

    numpy recurses: above 128 elements, sum(first half) + sum(rest), the half rounded
    down to a multiple of 8. Here the same tree is walked with an explicit stack
    (a recursive Numba function does not survive the disk cache when called from another)."""
    if n <= PAIRWISE_BLOCK:
        return _pairwise_block(x, start, n)
    starts = np.empty(64, np.int64)      # the path from the root: depth <= log2(n) < 64
    sizes = np.empty(64, np.int64)
    left = np.empty(64, np.float32)      # a node's left sum, once known
    done_left = np.zeros(64, np.bool_)
    top = 0
    starts[0], sizes[0] = start, n
    while True:
        m = sizes[top]
        if m > PAIRWISE_BLOCK and not done_left[top]:
            half = m // 2
            half -= half % 8
            top += 1
            starts[top], sizes[top], done_left[top] = starts[top - 1], half, False
            continue
        value = _pairwise_block(x, starts[top], m)
        while True:                      # hand the finished sum up the path
            if top == 0:
                return value
            top -= 1
            if not done_left[top]:       # it was the left child: go down the right one
                left[top], done_left[top] = value, True
                half = sizes[top] // 2
                half -= half % 8
                top += 1
                starts[top], sizes[top] = starts[top - 1] + half, sizes[top - 1] - half
                done_left[top] = False
                break
            value = left[top] + value    # it was the right child: this node is done


@register_jitable
def output_strides(dims, reduced):
    """The flat output's stride of each dim of x: 0 for reduced dims, C order over the kept."""
    strides = np.zeros(dims.size, np.int64)
    step = 1
    for d in range(dims.size - 1, -1, -1):
        if not reduced[d]:
            strides[d] = step
            step *= dims[d]
    return strides


@register_jitable
def output_index(idx, strides, nd):
    """The flat output position of the multi-index ``idx`` over its first ``nd`` dims."""
    o = 0
    for d in range(nd):
        o += idx[d] * strides[d]
    return o


@register_jitable
def next_index(idx, dims, last):
    """Advance the multi-index ``idx`` over dims 0..last in C order (wrapping at the end)."""
    d = last
    while d >= 0:
        idx[d] += 1
        if idx[d] < dims[d]:
            return
        idx[d] = 0
        d -= 1


@cpu_kernel(name="reduce_sum")
def _reduce_sum(x, dims, reduced, out):
    """out (zeros, flat) += x (flat, C order, shape ``dims``) over the ``reduced`` dims."""
    nd = dims.size
    inner = dims[nd - 1]
    ostride = output_strides(dims, reduced)
    idx = np.zeros(nd, np.int64)
    for base in range(0, x.size, inner):
        o = output_index(idx, ostride, nd - 1)
        if reduced[nd - 1]:
            out[o] += pairwise_sum(x, base, inner)
        else:
            row, acc = x[base:base + inner], out[o:o + inner]
            for j in range(inner):
                acc[j] += row[j]
        next_index(idx, dims, nd - 2)


@cpu_kernel(name="reduce_max")
def _reduce_max(x, dims, reduced, out):
    """out (flat) = max of x (flat, shape ``dims``) over the ``reduced`` dims; NaN wins,
    of equal values (0 and -0) the last (as numpy's max). Starts from the first element of
    each output (max has no identity)."""
    nd = dims.size
    ostride = output_strides(dims, reduced)
    seen = np.zeros(out.size, np.bool_)
    idx = np.zeros(nd, np.int64)
    for i in range(x.size):
        o = output_index(idx, ostride, nd)
        v = x[i]
        if not seen[o]:
            out[o] = v
            seen[o] = True
        elif out[o] == out[o] and not v < out[o]:
            out[o] = v
        next_index(idx, dims, nd - 1)


@cpu_kernel(name="first_max")
def _first_max(x, dims, reduced, best, mask):
    """mask (flat, zeros) True at the first maximum of x over the ``reduced`` dims (the
    first NaN if any, as np.argmax); ``best``: scratch, one value per output."""
    nd = dims.size
    ostride = output_strides(dims, reduced)
    where = np.full(best.size, -1, np.int64)
    idx = np.zeros(nd, np.int64)
    for i in range(x.size):
        o = output_index(idx, ostride, nd)
        v = x[i]
        if where[o] < 0 or (best[o] == best[o] and (v > best[o] or v != v)):
            best[o] = v
            where[o] = i
        next_index(idx, dims, nd - 1)
    for o in range(where.size):
        if where[o] >= 0:
            mask[where[o]] = True


def _axes(ndim, axis):
    if axis is None:
        return set(range(ndim))
    axes = (axis,) if np.ndim(axis) == 0 else axis
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim)
    return {a % ndim for a in axes}


def _plan(x, axis):
    """(x flat float32 C-contiguous, coalesced dims, reduced flags, kept-dims shape):
    neighbouring dims of one kind merge, as numpy's iterator coalesces them."""
    axes = _axes(x.ndim, axis)
    dims, reduced = [], []
    for d, n in enumerate(x.shape):
        if n == 1:
            continue            # a length-1 dim adds nothing and does not split a run
        if reduced and reduced[-1] == (d in axes):
            dims[-1] *= n
        else:
            dims.append(n)
            reduced.append(d in axes)
    if not dims:
        dims, reduced = [1], [True]
    kept = tuple(1 if d in axes else n for d, n in enumerate(x.shape))
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    return flat, np.array(dims, np.int64), np.array(reduced, np.bool_), kept


def _shaped(out, kept, x_ndim, axis, keepdims):
    out = out.reshape(kept)
    if keepdims:
        return out
    axes = _axes(x_ndim, axis)
    return out.reshape(tuple(n for d, n in enumerate(kept) if d not in axes))


def reduce_sum(x, axis=None, keepdims=False):
    """np.sum(x, axis, keepdims) of a float32 array, bit for bit when x's strides fall
    from the first axis to the last (C-contiguous arrays and slices of them: numpy walks
    them in C order too). Other layouts are copied to C order first; numpy would walk
    them in memory order, so their sums may round differently."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"reduce_sum: expected float32, got {x.dtype}")
    flat, dims, reduced, kept = _plan(x, axis)
    out = np.zeros(size(kept), np.float32)
    if flat.size:
        _reduce_sum(flat, dims, reduced, out)
    return _shaped(out, kept, x.ndim, axis, keepdims)


def reduce_max(x, axis=None, keepdims=False):
    """np.max(x, axis, keepdims) of a float32 array (NaN propagates)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"reduce_max: expected float32, got {x.dtype}")
    axes = _axes(x.ndim, axis)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError("reduce_max: zero-size reduction has no identity")
    flat, dims, reduced, kept = _plan(x, axis)
    out = np.empty(size(kept), np.float32)
    if flat.size:
        _reduce_max(flat, dims, reduced, out)
    return _shaped(out, kept, x.ndim, axis, keepdims)


def first_max(x, axis):
    """Bool mask of the first maximum along ``axis`` (of all elements if None)."""
    x = np.asarray(x)
    flat, dims, reduced, kept = _plan(x, axis)
    mask = np.zeros(x.shape, bool)
    if flat.size:
        _first_max(flat, dims, reduced, np.empty(size(kept), np.float32), mask.reshape(-1))
    return mask


@cpu_kernel(name="floor_or_zero")
def _floor_or_zero(top):
    for i in range(top.size):
        v = np.floor(top[i])
        top[i] = v if v - v == 0 else np.float32(0)     # inf - inf and NaN are NaN


def integer_shift(x, axis):
    """floor(max(x)) along ``axis`` (kept as size 1), 0 where the max is not finite."""
    top = reduce_max(x, axis, keepdims=True)
    _floor_or_zero(top.reshape(-1))
    return top


# --- scatter-add -----------------------------------------------------------------
@cpu_kernel(name="segment_add")
def _segment_add(out, rows, order, values):
    """out[rows[k]] += the sum of values[order[k]] over each run of equal sorted rows, as
    np.add.reduceat sums a run: per column, its first value + numpy's pairwise sum of the
    rest; then one add into the row."""
    width = out.shape[1]
    for k in range(rows.size):
        if rows[k] < 0 or rows[k] >= out.shape[0]:
            raise IndexError("scatter_add: row index out of range")
    rest = np.empty(order.size, np.float32)
    start = 0
    while start < order.size:
        end = start + 1
        while end < order.size and rows[end] == rows[start]:
            end += 1
        for j in range(width):
            for k in range(start + 1, end):
                rest[k - start - 1] = values[order[k], j]
            total = values[order[start], j]
            if end - start > 1:
                total += pairwise_sum(rest, 0, end - start - 1)
            out[rows[start], j] += total
        start = end


def scatter_add(out, idx, values):
    """out[idx] += values in place, repeated indices adding up (float adds).

    Basic indices (ints, slices) pick each element once: a plain add on a contiguous
    copy of the selection, written back. Rows picked by one integer array (embeddings)
    are summed segment by segment after a stable sort. Other indices (no layer uses them)
    take np.add.at, which runs numpy's buffered iterator.
    """
    basic = (int, slice, type(None), type(Ellipsis))
    if all(isinstance(i, basic) for i in (idx if isinstance(idx, tuple) else (idx,))):
        picked = np.ascontiguousarray(out[idx])
        picked += np.ascontiguousarray(np.broadcast_to(values, picked.shape))
        out[idx] = picked
        return
    if not (isinstance(idx, np.ndarray) and idx.dtype.kind in "iu"):
        np.add.at(out, idx, values)
        return
    if not (out.flags.c_contiguous and out.dtype == np.float32):
        raise ValueError("scatter_add: out must be a C-contiguous float32 array")
    rows = idx.reshape(-1)
    rows = np.where(rows < 0, rows + out.shape[0], rows)
    order = np.argsort(rows, kind="stable")
    values = np.ascontiguousarray(np.broadcast_to(values, idx.shape + out.shape[1:]), np.float32)
    _segment_add(out.reshape(out.shape[0], -1), rows[order], order, values.reshape(len(rows), -1))
