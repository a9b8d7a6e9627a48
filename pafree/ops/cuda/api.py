"""The CUDA host API: device arrays in, device arrays out, pafree.ops' names and arguments.

Host data is copied to the device first (``to_device``); each function works
out its launch on the host (pafree.ops.cuda.layout) and runs the kernels of
pafree.ops.cuda.kernels. The elementwise PA ops are generated from the table in
pafree.ops.elementwise, like pafree.ops' own. pafree.autograd.registry.use_cuda
registers these functions as the "cuda" backend of the registry's kernels.
"""
import sys
from functools import cache

import numpy as np
from numba import cuda

from .. import elementwise as elementwise_ops
from .. import patches
from ..cpu import float32_array, is_device_array
from ..gemm.shapes import matmul_shapes
from ..indices import size
from .kernels import (BINARY, FLOAT_BINARY, FLOAT_UNARY, UNARY, adamw_pa_kernel, exact_grad_a,
                      exact_grad_b, first_max_axis, floor_kernel, fold_kernel, gather,
                      isfinite_kernel, max_axis, nonnegative_kernel, pam_gemm_small,
                      pam_gemm_tiled, put_kernel, scatter_add_kernel, sum_axis, take_kernel,
                      unfold_kernel, where_kernel)
from .layout import (SMALL_TILE, TILE, as_flat, axis_slices, axis_view, broadcast_geometry,
                     broadcast_strides, device_geometry, flat_positions, launch,
                     positions)


def to_device(x, op="to_device"):
    """x as a C-contiguous float32 device array; host data is converted like pafree.ops does."""
    if is_device_array(x):
        if x.dtype != np.float32:
            raise TypeError(f"{op}: expected a float32 device array, got dtype {x.dtype}")
        if not x.is_c_contiguous():
            raise ValueError(f"{op}: device arrays must be C-contiguous")
        return x
    return cuda.to_device(float32_array(x, op))


def elementwise(kernel, x, op, view=np.int32, result=np.float32):
    """kernel(x, out) on flat arrays: x read as ``view``; out a new array of x's shape and
    dtype ``result``, read as ``view`` too when float32 (else as it is: bool)."""
    x = to_device(x, op)
    out = cuda.device_array(x.shape, result)
    if x.size:
        kernel[launch(x.size)](as_flat(x, view), as_flat(out, view if result is np.float32 else result))
    return out


def unary(name, x):
    return elementwise(UNARY[name], x, name)


def binary(name, a, b, table=BINARY, dtype=np.int32):
    """table[name] on a and b broadcast, both read as ``dtype`` (int32: bits; float32: floats)."""
    a, b = to_device(a, name), to_device(b, name)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = cuda.device_array(shape, np.float32)
    if out.size:
        table[name][launch(out.size)](
            as_flat(a, dtype), as_flat(b, dtype),
            broadcast_geometry(shape, (tuple(a.shape), tuple(b.shape))), as_flat(out, dtype))
    return out


# pam, pad, paexp2, ..., pasqrt_slope: one function per entry of pafree.ops.elementwise
elementwise_ops.generate(sys.modules[__name__], globals())


def pad_slope(a, b):
    return pad_slope_a(a, b), pad_slope_b(a, b)  # noqa: F821  (generated above)


def add(a, b):
    return binary("add", a, b, FLOAT_BINARY, np.float32)


def sub(a, b):
    return binary("sub", a, b, FLOAT_BINARY, np.float32)


def neg(x):
    return elementwise(FLOAT_UNARY["neg"], x, "neg", np.float32)


def relu(x):
    return elementwise(FLOAT_UNARY["relu"], x, "relu", np.float32)


def where(a, b, cond):
    """np.where(cond, a, b) with the registry's argument order; ``cond`` a bool array."""
    a, b = to_device(a, "where"), to_device(b, "where")
    if not is_device_array(cond):
        cond = cuda.to_device(np.ascontiguousarray(cond, dtype=np.bool_))
    shape = np.broadcast_shapes(a.shape, b.shape, cond.shape)
    out = cuda.device_array(shape, np.float32)
    if out.size:
        where_kernel[launch(out.size)](
            as_flat(a, np.float32), as_flat(b, np.float32), as_flat(cond, np.bool_),
            broadcast_geometry(shape, (tuple(a.shape), tuple(b.shape), tuple(cond.shape))),
            as_flat(out, np.float32))
    return out


def floor(x):
    return elementwise(floor_kernel, x, "floor")


def isfinite(x):
    return elementwise(isfinite_kernel, x, "isfinite", result=np.bool_)


def take(x, where_from):
    """x's elements at the flat positions ``where_from`` (a host array), in its shape."""
    out = cuda.device_array(where_from.shape, np.float32)
    if out.size:
        take_kernel[launch(out.size)](
            as_flat(x, np.float32), cuda.to_device(where_from.reshape(-1)), as_flat(out, np.float32))
    return out


def getitem(x, idx):
    """x[idx] (basic and integer-array indexing) as a new device array."""
    x = to_device(x, "getitem")
    return take(x, positions(flat_positions(tuple(x.shape)), idx))


def scatter_add(out, idx, values):
    """In place, np.add.at(out, idx, values): repeated positions add up in index order."""
    if not is_device_array(out):
        raise TypeError("scatter_add: out must be a device array (it is updated in place)")
    where_to = positions(flat_positions(tuple(out.shape)), idx)
    values = to_device(values, "scatter_add")
    if tuple(values.shape) != where_to.shape:
        values = broadcast_to(values, where_to.shape)
    flat = where_to.reshape(-1)
    if not flat.size:
        return
    order = np.argsort(flat, kind="stable")          # sources grouped by target, in order
    targets, starts = np.unique(flat[order], return_index=True)
    starts = np.append(starts, flat.size).astype(np.int64)
    scatter_add_kernel[launch(targets.size)](
        as_flat(out, np.float32), cuda.to_device(targets.astype(np.int64)), cuda.to_device(starts),
        cuda.to_device(order.astype(np.int64)), as_flat(values, np.float32))


def _patch_geometry(kernel, stride, padding):
    return cuda.to_device(np.array([*kernel, *stride, *padding], np.int64))


def unfold(x, kernel, stride, padding):
    """pafree.ops.patches.unfold on the device: the patch matrix (N, C*kh*kw, OH*OW)."""
    x = to_device(x, "unfold")
    if x.ndim != 4:
        raise TypeError(f"unfold: expected a 4-D array, got shape {tuple(x.shape)}")
    n, c, _, _, oh, ow = patches.shapes(x.shape, kernel, stride, padding)
    out = cuda.device_array((n, c * kernel[0] * kernel[1], oh, ow), np.float32)
    if out.size:
        unfold_kernel[launch(out.size)](x.view(np.int32), _patch_geometry(kernel, stride, padding),
                                        out.view(np.int32))
    return out.reshape(n, c * kernel[0] * kernel[1], oh * ow)


def fold(cols, shape, kernel, stride, padding):
    """pafree.ops.patches.fold on the device: unfold's adjoint, (N, C, H, W) of ``shape``."""
    n, c, _, _, oh, ow = patches.shapes(shape, kernel, stride, padding)
    cols = to_device(cols, "fold").reshape(n, c * kernel[0] * kernel[1], oh, ow)
    out = cuda.device_array(tuple(shape), np.float32)
    if out.size:
        fold_kernel[launch(out.size)](cols, _patch_geometry(kernel, stride, padding), out)
    return out


def nonnegative(x):
    """x >= 0 as a bool device array."""
    return elementwise(nonnegative_kernel, x, "nonnegative", np.float32, np.bool_)


def first_max(x, axis):
    """Bool mask of the first maximum along ``axis`` (of all elements if None), as np.argmax."""
    x = to_device(x, "first_max")
    out = cuda.device_array(x.shape, np.bool_)
    if x.size:
        x3 = axis_view(x, axis)
        first_max_axis[launch(x3.shape[0] * x3.shape[2])](x3, axis_view(out, axis))
    return out


def integer_shift(x, axis):
    """floor(max(x)) along ``axis`` (kept as size 1), 0 where the max is not finite."""
    top = floor(reduce_max(x, axis, keepdims=True))
    return where(top, zeros(tuple(top.shape)), isfinite(top))


def split(x, sizes, axis):
    """np.split of x into consecutive parts of ``sizes`` along ``axis`` (device copies)."""
    x = to_device(x, "split")
    every = flat_positions(tuple(x.shape))
    return [take(x, positions(every, idx)) for idx in axis_slices(tuple(x.shape), sizes, axis)]


def concatenate(*xs, axis):
    """np.concatenate(xs, axis) on the device."""
    xs = [to_device(x, "concatenate") for x in xs]
    shape = list(xs[0].shape)
    axis %= len(shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    out = cuda.device_array(tuple(shape), np.float32)
    every = flat_positions(tuple(shape))
    for x, idx in zip(xs, axis_slices(tuple(shape), [x.shape[axis] for x in xs], axis)):
        if x.size:
            put_kernel[launch(x.size)](
                as_flat(x, np.float32), cuda.to_device(positions(every, idx).reshape(-1)),
                as_flat(out, np.float32))
    return out


def gather_copy(x, strides, shape):
    """A new array of ``shape`` reading x with element ``strides`` (see source_index)."""
    out = cuda.device_array(shape, np.float32)
    if out.size:
        gather[launch(out.size)](
            as_flat(x, np.float32), device_geometry(shape, (strides,)), as_flat(out, np.float32))
    return out


def transpose(x, axes=None):
    """A C-contiguous copy of np.transpose(x, axes)."""
    x = to_device(x, "transpose")
    shape = tuple(x.shape)
    axes = tuple(reversed(range(len(shape)))) if axes is None else tuple(a % len(shape) for a in axes)
    strides = broadcast_strides(shape, shape)
    return gather_copy(x, tuple(strides[a] for a in axes), tuple(shape[a] for a in axes))


def broadcast_to(x, shape):
    """A C-contiguous copy of np.broadcast_to(x, shape)."""
    x = to_device(x, "broadcast_to")
    shape = np.broadcast_shapes(tuple(x.shape), tuple(shape))
    return gather_copy(x, broadcast_strides(x.shape, shape), shape)


@cache
def constant(value):
    """A one-element device array holding the float32 ``value``, made once."""
    return cuda.to_device(np.full(1, value, np.float32))


def zeros(shape, like=None):
    """A float32 zero array on the device (``like`` only for the registry's signature)."""
    return broadcast_to(constant(0.0), shape)


def ones_like(x):
    return broadcast_to(constant(1.0), x.shape)


def copy(x):
    """A new C-contiguous float32 device array with x's values."""
    return broadcast_to(x, tuple(x.shape))


def reshape(x, shape):
    """np.reshape on a C-contiguous device array: a view, no copy."""
    x = to_device(x, "reshape")
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    if -1 in shape:
        known = size(s for s in shape if s != -1)
        shape = tuple(x.size // known if s == -1 else s for s in shape)
    return x.reshape(shape)


def reduce_axes(kernel, x, axis, keepdims, op):
    """Reduce ``x`` over ``axis`` (None, an int or a tuple), one axis at a time, last axis first."""
    x = to_device(x, op)
    if x.ndim == 0:
        return x
    axes = range(x.ndim) if axis is None else (axis,) if np.ndim(axis) == 0 else axis
    axes = sorted({int(ax) % x.ndim for ax in axes}, reverse=True)
    for ax in axes:
        shape = tuple(x.shape)
        x3 = axis_view(x, ax)
        outer, n, inner = x3.shape
        if n == 0 and kernel is max_axis:
            raise ValueError(f"{op}: zero-size axis {ax} has no maximum")
        if not n:
            out = zeros((outer, inner))                                     # empty sum
        else:
            out = cuda.device_array((outer, inner), np.float32)
            if out.size:
                kernel[launch(out.size)](x3, out)
        x = out.reshape(shape[:ax] + (1,) + shape[ax + 1:])
    if not keepdims:
        x = x.reshape(tuple(s for d, s in enumerate(x.shape) if d not in axes))
    return x


def reduce_sum(x, axis=None, keepdims=False):
    """Float32 sum in increasing index order (numpy's np.sum adds pairwise: see docs/cuda.md)."""
    return reduce_axes(sum_axis, x, axis, keepdims, "sum")


def reduce_max(x, axis=None, keepdims=False):
    return reduce_axes(max_axis, x, axis, keepdims, "max")


def swap_last_axes(x):
    """A C-contiguous copy of x with its last two axes swapped (1-D stays as is)."""
    if x.ndim < 2:
        return x
    return transpose(x, tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


def matmul_operands(a, b, op, transpose_a=False, transpose_b=False):
    """a, b (transposed copies where asked) as int32 (nbA, M, K) and (nbB, K, N) device views,
    and their MatmulShapes. The kernels take a batch equal to the output's or of one product;
    an operand whose batch is neither (a conv's grouped weight against a batch of patch
    matrices) is broadcast to the output's batch by a copy."""
    shapes = matmul_shapes(a.shape, b.shape, op, transpose_a, transpose_b)
    a = swap_last_axes(a) if transpose_a else a
    b = swap_last_axes(b) if transpose_b else b
    a, b = (x if size(batch) in (1, size(shapes.batch))
            else broadcast_to(x, shapes.batch + tuple(x.shape[-2:]))
            for x, batch in ((a, shapes.batch_a), (b, shapes.batch_b)))
    a3 = a.reshape(size(a.shape[:-2]) if a.ndim > 1 else 1, shapes.m, shapes.k).view(np.int32)
    b3 = b.reshape(size(b.shape[:-2]) if b.ndim > 1 else 1, shapes.k, shapes.n).view(np.int32)
    return a3, b3, shapes


def pam_matmul(a, b, transpose_a=False, transpose_b=False):
    """PAM matrix product on the device, np.matmul's shapes (batch limits: matmul_operands).

    ``transpose_a`` / ``transpose_b`` swap the last two axes of that operand
    first (here by a transposed copy).
    """
    a = to_device(a, "pam_matmul")
    b = to_device(b, "pam_matmul")
    a3, b3, shapes = matmul_operands(a, b, "pam_matmul", transpose_a, transpose_b)
    m, n = shapes.m, shapes.n
    nb = size(shapes.batch)
    out = cuda.device_array((nb, m, n), np.float32)
    if out.size:
        kernel, tile = (pam_gemm_small, SMALL_TILE) if min(m, n) <= SMALL_TILE else (pam_gemm_tiled, TILE)
        grid = ((n + tile - 1) // tile, (m + tile - 1) // tile, nb)
        kernel[grid, (tile, tile)](a3, b3, out)
    return out.reshape(shapes.out_shape)


def pam_matmul_exact_grads(a, b, dy):
    """Exact derivatives of Y = pam_matmul(a, b) given dY, as pafree.ops.pam_matmul_exact_grads:
    da[i, k] = sum_j dY[i, j] ⊙ pam_slope(a[i, k], b[k, j]) (j increasing), db likewise over i;
    da and db carry the full batch shape."""
    a = to_device(a, "pam_matmul_exact_grads")
    b = to_device(b, "pam_matmul_exact_grads")
    dy = to_device(dy, "pam_matmul_exact_grads")
    a3, b3, shapes = matmul_operands(a, b, "pam_matmul_exact_grads")
    if tuple(dy.shape) != shapes.out_shape:
        raise ValueError(f"pam_matmul_exact_grads: dy has shape {tuple(dy.shape)}, expected {shapes.out_shape}")
    batch, m, k, n = shapes.batch, shapes.m, shapes.k, shapes.n
    nb = size(batch)
    dy3 = dy.reshape(nb, m, n).view(np.int32)
    da = cuda.device_array((nb, m, k), np.float32)
    db = cuda.device_array((nb, k, n), np.float32)
    if da.size:
        exact_grad_a[launch(da.size)](a3, b3, dy3, da)
    if db.size:
        exact_grad_b[launch(db.size)](a3, b3, dy3, db)
    da = da.reshape(batch + (m, k))
    db = db.reshape(batch + (k, n))
    if a.ndim == 1:
        da = da.reshape(batch + (k,))
    if b.ndim == 1:
        db = db.reshape(batch + (k,))
    return da, db


def adamw_pa(p, g, m, v, scalars):
    """pafree.ops.adamw.adamw_pa on device arrays: p, m, v updated in place;
    ``scalars`` an AdamWScalars (host floats)."""
    arrays = [to_device(x, "adamw_pa") for x in (p, g, m, v)]
    if not all(is_device_array(x) for x in (p, m, v)):
        raise TypeError("adamw_pa: p, m and v must be device arrays (updated in place)")
    if len({x.size for x in arrays}) != 1:
        raise ValueError(f"adamw_pa: sizes differ: {[x.size for x in arrays]}")
    if p.size:
        adamw_pa_kernel[launch(p.size)](
            *(as_flat(x, np.float32) for x in arrays), *(np.float32(c) for c in scalars))


# the host API (what pafree.ops.cuda re-exports): every function defined or generated here
__all__ = ["is_device_array"] + [name for name, fn in list(globals().items())
                                 if callable(fn) and getattr(fn, "__module__", None) == __name__]
