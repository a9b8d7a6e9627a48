"""PAM matrix multiply: C[i, j] = sum_k pam(A[i, k], B[k, j]), float32 sums in increasing k.

A simple row-at-a-time kernel; the blocked BLAS-speed version replaces it.
"""
import numpy as np
from numba import prange

from . import bits
from .cpu import float32_array
from .jit import cpu_kernel


@cpu_kernel(parallel=True)
def pam_gemm_rows(a, b, out):
    """a: (M, K) int32 bits, b: (K, N) int32 bits, out: (M, N) float32."""
    m, k = a.shape
    n = b.shape[1]
    for i in prange(m):
        prod = np.empty(n, np.int32)
        prod_f = prod.view(np.float32)
        acc = np.zeros(n, np.float32)
        for p in range(k):
            ap = a[i, p]
            for j in range(n):
                prod[j] = bits.pam(ap, b[p, j])
            for j in range(n):
                acc[j] += prod_f[j]
        out[i] = acc


def pam_matmul(a, b):
    """PAM matrix product with np.matmul's shape rules (2-D and batched)."""
    a = float32_array(a, "pam_matmul")
    b = float32_array(b, "pam_matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("pam_matmul: operands must have at least one dimension")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = a[None, :]
    if squeeze_b:
        b = b[:, None]
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"pam_matmul: shapes {a.shape} and {b.shape} do not align")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.ascontiguousarray(np.broadcast_to(a, batch + a.shape[-2:])).reshape(-1, *a.shape[-2:])
    b = np.ascontiguousarray(np.broadcast_to(b, batch + b.shape[-2:])).reshape(-1, *b.shape[-2:])
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), np.float32)
    for i in range(a.shape[0]):
        pam_gemm_rows(a[i].view(np.int32), b[i].view(np.int32), out[i])
    out = out.reshape(batch + out.shape[1:])
    if squeeze_a:
        out = out[..., 0, :]
    if squeeze_b:
        out = out[..., 0]
    return out
