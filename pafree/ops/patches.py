"""Convolution patches (im2col) and their adjoint on NCHW float32 arrays; index work only.

``unfold(x, kernel, stride, padding)`` copies every kernel-sized patch of the
zero-padded x into a column: out[n, (c*kh + di)*kw + dj, i*OW + j] =
x[n, c, i*sh - ph + di, j*sw - pw + dj], +0.0 where that lies in the padding.
``fold`` is its adjoint (the vjp of unfold): each input element adds the
columns that copied it in increasing (di, dj) order, starting from +0.0; one
thread owns each (n, c) plane (CPU) or element (CUDA), no atomics, so the
bits do not depend on the thread count or the backend. Values are moved as
int32 bits (NaN payloads and signed zeros kept); the only float operation is
fold's add.
"""
import numpy as np
from numba import prange
from numba.extending import register_jitable

from .jit import cpu_kernel


def out_size(length, kernel, stride, padding):
    """Output positions along one axis: (length + 2 padding - kernel) // stride + 1."""
    return (length + padding + padding - kernel) // stride + 1


@cpu_kernel(parallel=True, name="unfold")
def _unfold(x, kh, kw, sh, sw, ph, pw, out):
    """x (N, C, H, W) int32 bits -> out (N, C*kh*kw, OH, OW) int32 bits."""
    n_, c_, h_, w_ = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for nc in prange(n_ * c_):
        n, c = nc // c_, nc % c_
        for di in range(kh):
            for dj in range(kw):
                dst = out[n, (c * kh + di) * kw + dj]
                for i in range(oh):
                    h = i * sh - ph + di
                    for j in range(ow):
                        w = j * sw - pw + dj
                        dst[i, j] = x[n, c, h, w] if 0 <= h < h_ and 0 <= w < w_ else 0


@register_jitable
def unfold_element(x, n, row, i, j, kh, kw, sh, sw, ph, pw):
    """unfold's out[n, row, i, j] from x (N, C, H, W) int32 bits, for one-thread-per-output
    kernels (the CUDA one; _unfold walks the same positions in nested loops)."""
    c = row // (kh * kw)
    di = (row - c * kh * kw) // kw
    dj = row - (c * kh + di) * kw
    h = i * sh - ph + di
    w = j * sw - pw + dj
    if 0 <= h < x.shape[2] and 0 <= w < x.shape[3]:
        return x[n, c, h, w]
    return np.int32(0)


@register_jitable
def fold_element(cols, n, c, h, w, kh, kw, sh, sw, ph, pw):
    """fold's out[n, c, h, w] from cols (N, C*kh*kw, OH, OW) float32: the columns that
    copied x[n, c, h, w], added in increasing (di, dj) from +0.0 (the CUDA kernel, one
    thread per element; the CPU's _fold adds the same terms in the same order)."""
    oh, ow = cols.shape[2], cols.shape[3]
    acc = np.float32(0.0)
    for di in range(kh):
        t = h + ph - di
        if t < 0 or t % sh != 0 or t // sh >= oh:
            continue
        for dj in range(kw):
            u = w + pw - dj
            if u < 0 or u % sw != 0 or u // sw >= ow:
                continue
            acc += cols[n, (c * kh + di) * kw + dj, t // sh, u // sw]
    return acc


@cpu_kernel(parallel=True, name="fold")
def _fold(cols, kh, kw, sh, sw, ph, pw, out):
    """cols (N, C*kh*kw, OH, OW) float32 -> out (N, C, H, W), fold_element's sums: each
    (n, c) plane starts at +0.0 and the taps (di, dj) are added in increasing order, each
    reaching an element at most once (the loops of _unfold, without divisions)."""
    n_, c_, h_, w_ = out.shape
    oh, ow = cols.shape[2], cols.shape[3]
    for nc in prange(n_ * c_):
        n, c = nc // c_, nc % c_
        plane = out[n, c]
        plane[:] = np.float32(0.0)
        for di in range(kh):
            for dj in range(kw):
                src = cols[n, (c * kh + di) * kw + dj]
                for i in range(oh):
                    h = i * sh - ph + di
                    if 0 <= h < h_:
                        for j in range(ow):
                            w = j * sw - pw + dj
                            if 0 <= w < w_:
                                plane[h, w] += src[i, j]


def _float32_nchw(x, op):
    x = np.asarray(x)
    if x.dtype != np.float32 or x.ndim != 4:
        raise TypeError(f"{op}: expected a 4-D float32 array, got {x.dtype} of shape {x.shape}")
    return np.ascontiguousarray(x)


def shapes(shape, kernel, stride, padding):
    """(N, C, H, W, OH, OW) of an unfold of ``shape``."""
    n, c, h, w = shape
    return n, c, h, w, out_size(h, kernel[0], stride[0], padding[0]), out_size(w, kernel[1], stride[1], padding[1])


def unfold(x, kernel, stride, padding):
    """x (N, C, H, W) -> the patch matrix (N, C*kh*kw, OH*OW) (module docstring)."""
    x = _float32_nchw(x, "unfold")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w, oh, ow = shapes(x.shape, kernel, stride, padding)
    out = np.empty((n, c * kh * kw, oh, ow), np.float32)
    if out.size:
        _unfold(x.view(np.int32), kh, kw, sh, sw, ph, pw, out.view(np.int32))
    return out.reshape(n, c * kh * kw, oh * ow)


def fold(cols, shape, kernel, stride, padding):
    """The adjoint of unfold: cols (N, C*kh*kw, OH*OW) -> (N, C, H, W) of ``shape``."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w, oh, ow = shapes(shape, kernel, stride, padding)
    cols = _float32_nchw(np.asarray(cols).reshape(n, c * kh * kw, oh, ow), "fold")
    out = np.empty(shape, np.float32)
    if out.size:
        _fold(cols, kh, kw, sh, sw, ph, pw, out)
    return out
