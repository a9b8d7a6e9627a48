"""Numba CUDA kernels: the bit logic of bits.py on device arrays.

The scalar functions of bits.py (``register_jitable``) become device functions
here, exactly as they become CPU code in cpu.py: one source of truth for the
bit logic; likewise the PA AdamW element function of adamw.py. Kernels work on
int32 views of float32 device arrays. Float sums (reductions, the PAM GEMM,
scatter_add) add in float32 in increasing index order, one axis at a time: the
order of the CPU GEMM, so products agree bit for bit; numpy's np.sum (the
autograd's CPU sum) adds long contiguous axes pairwise, so sums agree within
float32 summation-order rounding (tests/cuda/test_train_step.py shows a whole
step equal bit for bit once the CPU adds in this order too).

The public functions mirror pafree.ops (same names and arguments) but take and
return numba device arrays (host data is copied to the device first);
``BACKEND`` maps pafree.autograd.registry primitive names to them. Importing
this module needs no GPU: kernels compile at their first launch, and
pafree.audit.ptx compiles every entry of ``KERNELS`` to PTX ahead of time.
"""
from functools import cache, partial

import numba
import numpy as np
from numba import cuda
from numba.extending import register_jitable

from . import bits, cpu
from .adamw import adamw_pa_element, as_bits, as_float
from .cpu import float32_array, is_device_array, to_host

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
UNARY = {name: unary_kernel(getattr(bits, name), name) for name in cpu.UNARY}
BINARY = {name: binary_kernel(getattr(bits, name), name) for name in cpu.BINARY}


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


# --- host side: device arrays in, device arrays out -----------------------------------------

def to_device(x, op="to_device"):
    """x as a C-contiguous float32 device array; host data is converted like pafree.ops does."""
    if is_device_array(x):
        if x.dtype != np.float32:
            raise TypeError(f"{op}: expected a float32 device array, got dtype {x.dtype}")
        if not x.is_c_contiguous():
            raise ValueError(f"{op}: device arrays must be C-contiguous")
        return x
    return cuda.to_device(float32_array(x, op))


def blocks_for(n, threads=THREADS):
    return max(1, min((n + threads - 1) // threads, MAX_BLOCKS))


def launch(n):
    """(blocks, threads per block) for a grid-stride loop over n items: a whole number of
    warps, at most THREADS per block (a few-element array gets one warp, not 256 threads)."""
    threads = min(THREADS, max(WARP, (n + WARP - 1) // WARP * WARP))
    return blocks_for(n, threads), threads


def as_flat(x, dtype):
    return x.reshape(x.size).view(dtype)


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


def pam(a, b):
    """Piecewise affine multiplication A ⊙ B on the device."""
    return binary("pam", a, b)


def pad(a, b):
    """Piecewise affine division A ⊘ B on the device."""
    return binary("pad", a, b)


def papow(x, p):
    return binary("papow", x, p)


def paexp2(x):
    return unary("paexp2", x)


def palog2(x):
    return unary("palog2", x)


def paexp(x):
    return unary("paexp", x)


def palog(x):
    return unary("palog", x)


def pasqrt(x):
    return unary("pasqrt", x)


def pam_slope(a, b):
    return binary("pam_slope", a, b)


def pad_slope(a, b):
    return binary("pad_slope_a", a, b), binary("pad_slope_b", a, b)


def paexp2_slope(x):
    return unary("paexp2_slope", x)


def palog2_slope(x):
    return unary("palog2_slope", x)


def pasqrt_slope(x):
    return unary("pasqrt_slope", x)


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


def flat_positions(shape):
    """Each element's flat position, as an int64 host array of ``shape`` (made once per call
    of an op, whatever number of parts it indexes)."""
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def positions(every, idx):
    """The flat positions that ``idx`` reads from an array, given its ``flat_positions``.

    Integer work on the index alone, on the host (idx holds ints, slices and integer
    arrays, on the host or the device); the data stay on the device.
    """
    idx = tuple(map(to_host, idx)) if isinstance(idx, tuple) else to_host(idx)
    return np.ascontiguousarray(every[idx])


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


def nonnegative(x):
    """x >= 0 as a bool device array."""
    return elementwise(nonnegative_kernel, x, "nonnegative", np.float32, np.bool_)


def axis_view(x, axis):
    """x as (outer, n, inner) around ``axis`` (None: all elements as one axis)."""
    shape = tuple(x.shape)
    if axis is None:
        return x.reshape(1, x.size, 1)
    axis %= len(shape)
    return x.reshape(int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
                     int(np.prod(shape[axis + 1:], dtype=np.int64)))


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


def axis_slices(shape, sizes, axis):
    """The index of each consecutive part of ``sizes`` along ``axis``."""
    axis %= len(shape)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(slice(None),) * axis + (slice(starts[p], starts[p + 1]),) for p in range(len(sizes))]


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
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
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
    """Float32 sum in increasing index order (numpy's np.sum adds pairwise: see the README)."""
    return reduce_axes(sum_axis, x, axis, keepdims, "sum")


def reduce_max(x, axis=None, keepdims=False):
    return reduce_axes(max_axis, x, axis, keepdims, "max")


def swap_last_axes(x):
    """A C-contiguous copy of x with its last two axes swapped (1-D stays as is)."""
    if x.ndim < 2:
        return x
    return transpose(x, tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


def matmul_operands(a, b, op):
    """a, b as int32 (nbA, M, K) and (nbB, K, N) device views, the batch shape and np.matmul's
    output shape; batch dimensions must be equal on both sides or on one side only (or all 1)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"{op}: operands must have at least one dimension")
    shape_a = (1,) + tuple(a.shape) if a.ndim == 1 else tuple(a.shape)   # plain tuples: the
    shape_b = tuple(b.shape) + (1,) if b.ndim == 1 else tuple(b.shape)   # simulator's refuse [-1]
    if shape_a[-1] != shape_b[-2]:
        raise ValueError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align")
    batch_a, batch_b = shape_a[:-2], shape_b[:-2]
    batch = np.broadcast_shapes(batch_a, batch_b)
    for side in (batch_a, batch_b):
        if side != batch and any(s != 1 for s in side):
            raise NotImplementedError(
                f"{op} on cuda: batch shapes {batch_a} and {batch_b} (only equal or one-sided)")
    (m, k), n = shape_a[-2:], shape_b[-1]
    a3 = a.reshape(int(np.prod(batch_a, dtype=np.int64)), m, k).view(np.int32)
    b3 = b.reshape(int(np.prod(batch_b, dtype=np.int64)), k, n).view(np.int32)
    out_shape = batch + (m, n)
    if a.ndim == 1:
        out_shape = out_shape[:-2] + out_shape[-1:]
    if b.ndim == 1:
        out_shape = out_shape[:-1]
    return a3, b3, batch, out_shape


def pam_matmul(a, b, transpose_a=False, transpose_b=False):
    """PAM matrix product on the device, np.matmul's shapes (batch limits: matmul_operands).

    ``transpose_a`` / ``transpose_b`` swap the last two axes of that operand
    first (here by a transposed copy).
    """
    a = to_device(a, "pam_matmul")
    b = to_device(b, "pam_matmul")
    a3, b3, batch, out_shape = matmul_operands(
        swap_last_axes(a) if transpose_a else a, swap_last_axes(b) if transpose_b else b, "pam_matmul")
    m, n = a3.shape[1], b3.shape[2]
    nb = int(np.prod(batch, dtype=np.int64))
    out = cuda.device_array((nb, m, n), np.float32)
    if out.size:
        kernel, tile = (pam_gemm_small, SMALL_TILE) if min(m, n) <= SMALL_TILE else (pam_gemm_tiled, TILE)
        grid = ((n + tile - 1) // tile, (m + tile - 1) // tile, nb)
        kernel[grid, (tile, tile)](a3, b3, out)
    return out.reshape(out_shape)


def pam_matmul_exact_grads(a, b, dy):
    """Exact derivatives of Y = pam_matmul(a, b) given dY, as pafree.ops.pam_matmul_exact_grads:
    da[i, k] = sum_j dY[i, j] ⊙ pam_slope(a[i, k], b[k, j]) (j increasing), db likewise over i;
    da and db carry the full batch shape."""
    a = to_device(a, "pam_matmul_exact_grads")
    b = to_device(b, "pam_matmul_exact_grads")
    dy = to_device(dy, "pam_matmul_exact_grads")
    a3, b3, batch, out_shape = matmul_operands(a, b, "pam_matmul_exact_grads")
    if tuple(dy.shape) != out_shape:
        raise ValueError(f"pam_matmul_exact_grads: dy has shape {tuple(dy.shape)}, expected {out_shape}")
    (m, k), n = a3.shape[1:], b3.shape[2]
    nb = int(np.prod(batch, dtype=np.int64))
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


def adamw_pa_update(p, g, m, v, *scalars):
    """pafree.ops.adamw.adamw_pa_update on device arrays: p, m, v updated in place.
    ``scalars``: rate1, rate2, step_size, root_bias2, eps, decay (host floats)."""
    arrays = [to_device(x, "adamw_pa_update") for x in (p, g, m, v)]
    if not all(is_device_array(x) for x in (p, m, v)):
        raise TypeError("adamw_pa_update: p, m and v must be device arrays (updated in place)")
    if len({x.size for x in arrays}) != 1:
        raise ValueError(f"adamw_pa_update: sizes differ: {[x.size for x in arrays]}")
    if p.size:
        adamw_pa_kernel[launch(p.size)](
            *(as_flat(x, np.float32) for x in arrays), *(np.float32(c) for c in scalars))


# pafree.autograd.registry primitive name -> device kernel with the CPU kernel's arguments
BACKEND = {
    # PA primitives and their exact slopes
    "pam": pam, "pad": pad, "paexp2": paexp2, "palog2": palog2, "pasqrt": pasqrt,
    "pam_matmul": pam_matmul, "pam_matmul_exact_grads": pam_matmul_exact_grads,
    "pam_slope": pam_slope, "pad_slope_a": partial(binary, "pad_slope_a"), "pad_slope_b": partial(binary, "pad_slope_b"),
    "paexp2_slope": paexp2_slope, "palog2_slope": palog2_slope, "pasqrt_slope": pasqrt_slope,
    # shared primitives: float add/sub, compares, copies
    "add": add, "sub": sub, "neg": neg, "relu": relu, "where": where, "nonnegative": nonnegative,
    "sum": reduce_sum, "max": reduce_max, "first_max": first_max, "integer_shift": integer_shift,
    "zeros": zeros, "ones_like": ones_like, "copy": copy, "reshape": reshape,
    "transpose": transpose, "broadcast_to": broadcast_to, "getitem": getitem,
    "scatter_add": scatter_add, "split": split, "concatenate": concatenate,
}
