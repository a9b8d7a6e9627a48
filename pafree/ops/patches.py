"""Convolution patches (im2col) and their adjoint, on NCHW float32 arrays; index work only.

``unfold(x, kernel, stride, padding)`` copies every kernel-sized patch of the
zero-padded x into a column: out[n, (c*kh + di)*kw + dj, i*OW + j] =
x[n, c, i*sh - ph + di, j*sw - pw + dj], +0.0 where that lies in the padding.
``fold`` is its adjoint (the vjp of unfold): each input element gathers the
columns that copied it and adds them in increasing (di, dj) order, starting
from +0.0, one output per loop iteration (no scatter, no atomics), so the
bits do not depend on the thread count. Values are moved as int32 bits (NaN
payloads and signed zeros kept); the only float operation is fold's add.
"""
import numpy as np
from numba import prange

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


@cpu_kernel(parallel=True, name="fold")
def _fold(cols, kh, kw, sh, sw, ph, pw, out):
    """cols (N, C*kh*kw, OH, OW) float32 -> out (N, C, H, W): the sum over (di, dj)
    increasing of the columns that copied each element, from +0.0."""
    n_, c_, h_, w_ = out.shape
    oh, ow = cols.shape[2], cols.shape[3]
    for nc in prange(n_ * c_):
        n, c = nc // c_, nc % c_
        for h in range(h_):
            for w in range(w_):
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
                out[n, c, h, w] = acc


def _float32_nchw(x, op):
    x = np.asarray(x)
    if x.dtype != np.float32 or x.ndim != 4:
        raise TypeError(f"{op}: expected a 4-D float32 array, got {x.dtype} of shape {x.shape}")
    return np.ascontiguousarray(x)


def unfold(x, kernel, stride, padding):
    """x (N, C, H, W) -> the patch matrix (N, C*kh*kw, OH*OW) (module docstring)."""
    x = _float32_nchw(x, "unfold")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    out = np.empty((n, c * kh * kw, oh, ow), np.float32)
    if out.size:
        _unfold(x.view(np.int32), kh, kw, sh, sw, ph, pw, out.view(np.int32))
    return out.reshape(n, c * kh * kw, oh * ow)


def fold(cols, shape, kernel, stride, padding):
    """The adjoint of unfold: cols (N, C*kh*kw, OH*OW) -> (N, C, H, W) of ``shape``."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = shape
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    cols = _float32_nchw(np.asarray(cols).reshape(n, c * kh * kw, oh, ow), "fold")
    out = np.empty(shape, np.float32)
    if out.size:
        _fold(cols, kh, kw, sh, sw, ph, pw, out)
    return out
