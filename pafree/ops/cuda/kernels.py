"""The CUDA kernels: the bit logic of bits.py on int32 views of float32 device arrays.

The scalar functions of bits.py (``register_jitable``) become device functions
here, exactly as they become CPU code in cpu.py: one source of truth for the
bit logic; likewise the PA AdamW element function of adamw.py. Float sums
(reductions, the PAM GEMM, scatter_add) add in float32 in increasing index
order, one axis at a time. Every kernel is registered in ``KERNELS`` with the
signature the PTX audit (pafree.audit.ptx) compiles; launches compile lazily.
"""
import numpy as np
from numba import cuda
from numba.extending import register_jitable

from .. import bits, elementwise
from ..adamw import adamw_pa_element, as_bits, as_float
from ..patches import fold_element, unfold_element
from .layout import SMALL_TILE, TILE

KERNELS = {}             # name -> (kernel, PTX signature): what the PTX audit compiles


def cuda_kernel(signature, name=None):
    """Decorator: a CUDA kernel under pafree's policy (never fast-math), registered for the audit.

    Compiled lazily at the first launch; ``signature`` is the one the PTX
    audit compiles (launches may specialise on other array layouts).
    """
    def wrap(fn):
        kernel = cuda.jit(fastmath=False)(fn)
        KERNELS[name or fn.__name__] = (kernel, signature)
        return kernel
    return wrap


# --- elementwise -------------------------------------------------------------------

def unary_kernel(fn, name, dtype="int32"):
    @cuda_kernel(f"void({dtype}[::1], {dtype}[::1])", name)
    def kernel(x, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = fn(x[i])
    return kernel


@register_jitable
def source_index(i, geometry, row):
    """Flat index into operand ``row`` for the flat output index i.

    ``geometry`` holds one row of element strides per operand (0 on broadcast
    axes) and, last, the output shape; with no columns every operand is read
    at i itself (same shapes, the fast path).
    """
    ndim = geometry.shape[1]
    if ndim == 0:
        return i
    shape = geometry.shape[0] - 1
    index = 0
    rest = i
    for d in range(ndim - 1, -1, -1):        # split i into indices, last axis first
        q = rest // geometry[shape, d]
        index += (rest - q * geometry[shape, d]) * geometry[row, d]
        rest = q
    return index


def binary_kernel(fn, name, dtype="int32"):
    """out[i] = fn(a, b) at the broadcast positions ``geometry`` gives (see source_index)."""
    @cuda_kernel(f"void({dtype}[::1], {dtype}[::1], int64[:, ::1], {dtype}[::1])", name)
    def kernel(a, b, geometry, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = fn(a[source_index(i, geometry, 0)], b[source_index(i, geometry, 1)])
    return kernel


@cuda_kernel("void(float32[::1], float32[::1], boolean[::1], int64[:, ::1], float32[::1])")
def where_kernel(a, b, cond, geometry, out):
    """out[i] = a if cond else b, broadcast (numpy's where(cond, a, b))."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        if cond[source_index(i, geometry, 2)]:
            out[i] = a[source_index(i, geometry, 0)]
        else:
            out[i] = b[source_index(i, geometry, 1)]


@cuda_kernel("void(float32[::1], int64[:, ::1], float32[::1])")
def gather(x, geometry, out):
    """out[i] = x[source_index(i)]: a copy in another layout (transpose, broadcast_to)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = x[source_index(i, geometry, 0)]


@cuda_kernel("void(float32[::1], int64[::1], float32[::1])")
def take_kernel(x, positions, out):
    """out[i] = x[positions[i]] (indexing with the positions worked out on the host)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = x[positions[i]]


@cuda_kernel("void(float32[::1], int64[::1], int64[::1], int64[::1], float32[::1])")
def scatter_add_kernel(out, targets, starts, sources, values):
    """out[targets[u]] += values[sources[s]] for s in starts[u]..starts[u+1], in that order:
    one thread per target, so repeated targets add in np.add.at's order, deterministically."""
    for u in range(cuda.grid(1), targets.size, cuda.gridsize(1)):
        acc = out[targets[u]]
        for s in range(starts[u], starts[u + 1]):
            acc += values[sources[s]]
        out[targets[u]] = acc


# --- convolution patches (pafree.ops.patches) ------------------------------------------

def patch_kernel(element, dtype, name):
    """out[a, b, c, d] = element(src, a, b, c, d, *geometry), one thread per output element;
    geometry = (kh, kw, sh, sw, ph, pw)."""
    @cuda_kernel(f"void({dtype}[:, :, :, ::1], int64[::1], {dtype}[:, :, :, ::1])", name)
    def kernel(src, geometry, out):
        n1, n2, n3 = out.shape[1], out.shape[2], out.shape[3]
        for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            a, rest = t // (n1 * n2 * n3), t % (n1 * n2 * n3)
            b, rest = rest // (n2 * n3), rest % (n2 * n3)
            out[a, b, rest // n3, rest % n3] = element(
                src, a, b, rest // n3, rest % n3,
                geometry[0], geometry[1], geometry[2], geometry[3], geometry[4], geometry[5])
    return kernel


unfold_kernel = patch_kernel(unfold_element, "int32", "unfold_kernel")   # (N, C*kh*kw, OH, OW) bits
fold_kernel = patch_kernel(fold_element, "float32", "fold_kernel")       # (N, C, H, W), fold's order


@cuda_kernel("void(int32[::1], int32[::1])")
def floor_kernel(x, out):
    """IEEE floor from the bits: clear the fraction bits; a negative number with a fraction
    then steps down by 1.0 (an exact float subtraction)."""
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        v = x[i]
        e = ((v & bits.MAG) >> bits.MANT_BITS) - bits.BIAS      # unbiased exponent
        if e >= bits.MANT_BITS:                                  # integral already, inf, NaN
            out[i] = v
        elif e < 0:                                              # |x| < 1
            out[i] = v if (v & bits.MAG) == 0 else (bits.SIGN | bits.ONE if v < 0 else 0)
        else:
            fraction = bits.MANT >> e
            if v & fraction == 0 or v >= 0:
                out[i] = v & ~fraction
            else:
                out[i] = as_bits(as_float(v & ~fraction) - np.float32(1))


@cuda_kernel("void(int32[::1], boolean[::1])")
def isfinite_kernel(x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = (x[i] & bits.MAG) < bits.INF


@cuda_kernel("void(float32[::1], int64[::1], float32[::1])")
def put_kernel(x, positions, out):
    """out[positions[i]] = x[i] (writing into a part of out, e.g. for concatenate)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[positions[i]] = x[i]


@cuda_kernel("void(float32[::1], boolean[::1])")
def nonnegative_kernel(x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = x[i] >= 0


# the PA primitives of the CPU kernels (cpu.py), from the same bits.py functions
UNARY = {name: unary_kernel(getattr(bits, name), name) for name in elementwise.UNARY}
BINARY = {name: binary_kernel(getattr(bits, name), name) for name in elementwise.BINARY}


# the float add/sub/negate the autograd shares between all modes (no multiply involved)
@register_jitable
def float_add(a, b):
    return a + b


@register_jitable
def float_sub(a, b):
    return a - b


@register_jitable
def float_neg(x):
    return -x


@register_jitable
def float_relu(x):
    """np.maximum(x, 0): x where x > 0 or NaN, else +0 (-0.0 included)."""
    return x if x > 0 or x != x else np.float32(0)


FLOAT_BINARY = {"add": binary_kernel(float_add, "float_add", "float32"),
                "sub": binary_kernel(float_sub, "float_sub", "float32")}
FLOAT_UNARY = {"neg": unary_kernel(float_neg, "float_neg", "float32"),
               "relu": unary_kernel(float_relu, "float_relu", "float32")}


# --- reductions over one axis of x viewed as (outer, n, inner) ------------------------

@cuda_kernel("void(float32[:, :, ::1], float32[:, ::1])")
def sum_axis(x, out):
    """out[o, j] = x[o, 0, j] + x[o, 1, j] + ... in float32, in increasing index order."""
    outer, n, inner = x.shape
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        j = t - o * inner
        acc = np.float32(0)
        for k in range(n):
            acc += x[o, k, j]
        out[o, j] = acc


@cuda_kernel("void(float32[:, :, ::1], float32[:, ::1])")
def max_axis(x, out):
    """out[o, j] = max over k of x[o, k, j]; NaN if any element is NaN (numpy's rule)."""
    outer, n, inner = x.shape
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        j = t - o * inner
        acc = x[o, 0, j]
        for k in range(1, n):
            v = x[o, k, j]
            if acc == acc and (v > acc or v != v):
                acc = v
        out[o, j] = acc


@cuda_kernel("void(float32[:, :, ::1], boolean[:, :, ::1])")
def first_max_axis(x, out):
    """out[o, k, j] = (k is np.argmax of x[o, :, j]): the first maximum, or the first NaN."""
    outer, n, inner = x.shape
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        j = t - o * inner
        best = 0
        top = x[o, 0, j]
        for k in range(1, n):
            v = x[o, k, j]
            if top == top and (v > top or v != v):
                best = k
                top = v
        for k in range(n):
            out[o, k, j] = k == best


# --- PAM GEMM: shared-memory tiles, one thread per output element -------------------------

def tiled_gemm(tile, name):
    """The PAM GEMM kernel with square ``tile`` x ``tile`` thread blocks."""
    @cuda_kernel("void(int32[:, :, ::1], int32[:, :, ::1], float32[:, :, ::1])", name)
    def kernel(a, b, out):
        """out[z] = a[z] (x) b[z] as PAM products summed in float32 in increasing k.

        a: (Ba, M, K) and b: (Bb, K, N) int32 bits, Ba and Bb equal to out's batch
        or 1 (shared). Tiles past the edges are padded with +0: pam(0, 0) = +0
        adds nothing, so the sum is exactly the CPU kernel's.
        """
        sa = cuda.shared.array((tile, tile), np.int32)
        sb = cuda.shared.array((tile, tile), np.int32)
        m, k = a.shape[1], a.shape[2]
        n = b.shape[2]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        z = cuda.blockIdx.z
        za = z if a.shape[0] > 1 else 0
        zb = z if b.shape[0] > 1 else 0
        acc = np.float32(0)
        for k0 in range(0, k, tile):
            sa[ty, tx] = a[za, row, k0 + tx] if row < m and k0 + tx < k else 0
            sb[ty, tx] = b[zb, k0 + ty, col] if k0 + ty < k and col < n else 0
            cuda.syncthreads()
            for kk in range(tile):
                acc += as_float(bits.pam(sa[ty, kk], sb[kk, tx]))
            cuda.syncthreads()
        if row < m and col < n:
            out[z, row, col] = acc
    return kernel


pam_gemm_tiled = tiled_gemm(TILE, "pam_gemm_tiled")
pam_gemm_small = tiled_gemm(SMALL_TILE, "pam_gemm_small")


def exact_grad(of_a, name):
    """The kernel of the exact derivative of pam_matmul with respect to a (``of_a``) or b."""
    @cuda_kernel("void(int32[:, :, ::1], int32[:, :, ::1], int32[:, :, ::1], float32[:, :, ::1])", name)
    def kernel(a, b, dy, grad):
        """of_a: grad[z, i, k] = sum_j pam(dy[z, i, j], pam_slope(a[i, k], b[k, j])), j increasing;
        else: grad[z, k, j] = sum_i pam(dy[z, i, j], pam_slope(b[k, j], a[i, k])), i increasing."""
        nb, rows, cols = grad.shape
        steps = dy.shape[2] if of_a else dy.shape[1]
        for t in range(cuda.grid(1), nb * rows * cols, cuda.gridsize(1)):
            z = t // (rows * cols)
            r = (t - z * rows * cols) // cols
            c = t - (z * rows + r) * cols
            za = z if a.shape[0] > 1 else 0
            zb = z if b.shape[0] > 1 else 0
            acc = np.float32(0)
            for s in range(steps):
                if of_a:            # (r, c, s) = (i, k, j)
                    acc += as_float(bits.pam(dy[z, r, s], bits.pam_slope(a[za, r, c], b[zb, c, s])))
                else:               # (r, c, s) = (k, j, i)
                    acc += as_float(bits.pam(dy[z, s, c], bits.pam_slope(b[zb, r, c], a[za, s, r])))
            grad[z, r, c] = acc
    return kernel


exact_grad_a = exact_grad(True, "exact_grad_a")
exact_grad_b = exact_grad(False, "exact_grad_b")


# --- optimizer ------------------------------------------------------------------------------

# The same Python source as the CPU loop's body, compiled as a CUDA device function (the
# CPU's inline="always" overload does not type on the CUDA target).
adamw_element = cuda.jit(device=True)(adamw_pa_element)


@cuda_kernel("void(float32[::1], float32[::1], float32[::1], float32[::1], "
             "float32, float32, float32, float32, float32, float32)")
def adamw_pa_kernel(p, g, m, v, rate1, rate2, step_size, root_bias2, eps, decay):
    """PA AdamW in place, one thread per element: the CPU kernel's element function."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        p[i], m[i], v[i] = adamw_element(p[i], g[i], m[i], v[i], rate1, rate2,
                                            step_size, root_bias2, eps, decay)
