"""Exact derivatives of the PAM matrix product (SPEC section 4).

da[i, k] = sum_j dY[i, j] ⊙ pam_slope(A[i, k], B[k, j]) and
db[k, j] = sum_i dY[i, j] ⊙ pam_slope(B[k, j], A[i, k]): each term is an exact
PAM by a signed power of two, summed in float32 from +0.0 in increasing j
(resp. i), so the result is independent of the thread count.

The kernels are plain vectorised loops over ``bits.pam_slope`` and ``bits.pam``:
correct, about 20x slower than the forward GEMM (the exact matmul derivative
is the non-default kind; SPEC section 5).
"""
import numpy as np
from numba import prange

from . import bits
from .gemm import _as_float, _float32, _operands
from .jit import cpu_kernel


@cpu_kernel(parallel=True)
def exact_grad_a(a, bt, dy, a_index, b_index, da):
    """da[z, i, k] = sum_j pam(dy[z, i, j], pam_slope(A[i, k], B[k, j])), j increasing.

    a: (nbA, M, K) bits, bt: (nbB, N, K) bits of B transposed, dy: (nb, M, N) bits.
    """
    nb, m, k_total = da.shape
    n = dy.shape[2]
    for t in prange(nb * m):
        z = t // m
        i = t - z * m
        acc = da[z, i]
        acc[:] = 0.0
        a_row = a[a_index[z], i]
        for j in range(n):
            g = dy[z, i, j]
            b_col = bt[b_index[z], j]
            for k in range(k_total):
                slope = bits.pam_slope(a_row[k], b_col[k])
                acc[k] += _as_float(np.int32(bits.pam(g, slope)))


@cpu_kernel(parallel=True)
def exact_grad_b(at, b, dy, a_index, b_index, db):
    """db[z, k, j] = sum_i pam(dy[z, i, j], pam_slope(B[k, j], A[i, k])), i increasing.

    at: (nbA, K, M) bits of A transposed, b: (nbB, K, N) bits, dy: (nb, M, N) bits.
    """
    nb, k_total, n = db.shape
    m = dy.shape[1]
    for t in prange(nb * k_total):
        z = t // k_total
        k = t - z * k_total
        acc = db[z, k]
        acc[:] = 0.0
        b_row = b[b_index[z], k]
        a_col = at[a_index[z], k]
        for i in range(m):
            a_ik = a_col[i]
            g_row = dy[z, i]
            for j in range(n):
                slope = bits.pam_slope(b_row[j], a_ik)
                acc[j] += _as_float(np.int32(bits.pam(g_row[j], slope)))


def pam_matmul_exact_grads(a, b, dy):
    """Exact derivatives of Y = pam_matmul(a, b) (SPEC section 4), given dY.

    da[..., i, k] = sum_j dY[i, j] ⊙ pam_slope(a[i, k], b[k, j]) and
    db[..., k, j] = sum_i dY[i, j] ⊙ pam_slope(b[k, j], a[i, k]), float32 sums
    from +0.0 in increasing j (resp. i). Each term is an exact PAM by a signed
    power of two. Shapes follow np.matmul; da and db carry the full broadcast
    batch shape (sum over broadcast axes is the caller's unbroadcast); a 1-D
    operand gives a 1-D gradient.
    """
    a3, b3, a_index, b_index, batch, out_shape = _operands(a, b, False, False,
                                                           "pam_matmul_exact_grads")
    m, k = a3.shape[1:]
    n = b3.shape[2]
    dy = _float32(dy, "pam_matmul_exact_grads")
    if dy.shape != out_shape:
        raise ValueError(f"pam_matmul_exact_grads: dy has shape {dy.shape}, expected {out_shape}")
    dy3 = np.ascontiguousarray(dy.reshape((a_index.size, m, n))).view(np.int32)
    da = np.zeros((a_index.size, m, k), np.float32)
    db = np.zeros((a_index.size, k, n), np.float32)
    if da.size and n:
        exact_grad_a(np.ascontiguousarray(a3), np.ascontiguousarray(b3.swapaxes(1, 2)),
                     dy3, a_index, b_index, da)
    if db.size and m:
        exact_grad_b(np.ascontiguousarray(a3.swapaxes(1, 2)), np.ascontiguousarray(b3),
                     dy3, a_index, b_index, db)
    da = da.reshape(batch + (m, k))
    db = db.reshape(batch + (k, n))
    if np.ndim(a) == 1:
        da = da[..., 0, :]
    if np.ndim(b) == 1:
        db = db[..., 0]
    return da, db
