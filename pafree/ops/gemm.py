"""PAM matrix multiply: C[i, j] = sum_k pam(A[i, k], B[k, j]) at BLAS speed, bit-exact.

Semantics: every C[i, j] is the float32 sum, in increasing k and starting from
+0.0, of the PAM products ``bits.pam(A[i, k], B[k, j])``. Each output element
is owned by one thread and summed in that order, so the result is
bit-identical to a naive scalar loop for any thread count (NaNs compare as
NaN: which NaN bit pattern comes out of NaN + NaN is the hardware's choice).

How it is fast (GotoBLAS structure, one integer add + one float add per term):
- Both operands are packed once per call into per-thread buffers reused
  between calls (O(M*K + K*N) int32, kept at the largest size seen). A goes
  to micro-panels of MR rows: a plane of bits and a plane of thresholds
  ``0x3FFFFFFF - |a|``; B to panels of NR columns: a plane of ``bits - ONE``
  and a plane of keys ``|b|`` (zero and subnormal B map to INT_MIN, zero A to
  an INT_MAX threshold). A product is a normal number exactly when
  ``key_b > thr_a``, and its bits are then ``bits_a + (bits_b - ONE)``: the
  carry-free add also produces the sign. The fast loop reads only the bits
  planes.
- Packing records each block's smallest and largest magnitude. Per MR x NR
  tile and K chunk the kernel picks one of three loops: *fast* when the
  bounds prove every product is a normal number (add the bits, add the
  float), *masked* when products may vanish but none can overflow (the float
  add is skipped where the key test fails; skipping a signed zero is exact
  because the sum starts at +0.0 and so is never -0.0), and *exact* (the
  scalar ``bits.pam``) for the rare tile that holds inf, NaN or huge values.
- The MR x NR accumulator lives in a stack array that LLVM keeps in zmm
  registers, loaded from and stored to the output once per K chunk; tile
  edges go through a scratch tile, so no shape needs padding by the caller.

- Tasks are (batch element, row block of up to 128 rows, NG column panels),
  the row blocks shrinking until every thread has work (a weight gradient,
  64 x 768 @ 768 x 64, would otherwise be one task; K is never split). Many
  small products (attention heads) instead run one task per batch element
  that packs its own operands into L2 and multiplies them: one parallel
  launch.

Transposed operands (``transpose_a``/``transpose_b``) are read in place by the
packing; a product with few columns is computed as (B^T A^T)^T, which PAM's
commutativity makes the same sums in the same order, and a batch against one
2-D B as a single GEMM of the stacked rows.

The exact-derivative GEMMs live in ``gemm_grads``.
"""
import math
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import carray, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from . import bits
from .jit import cpu_kernel

MR = 4          # rows of a register tile
NR = 64         # columns of a register tile (4 zmm vectors of int32/float32)
KC = 256        # K chunk: a B panel's chunk (both planes) is 128 KiB, in L2
MC = 32         # micro-panels of A per task (128 rows), at most
NG = 4          # column panels per task: a K chunk of its A rows is reused from L2 NG times
L2_BYTES = 1 << 19  # a batch element whose packed operands fit here is packed inside its task
THR_BASE = bits.ONE + bits.MIN_NORMAL - 1   # 0x3FFFFFFF: valid iff |b| > THR_BASE - |a|
INT_MAX = 0x7FFFFFFF
INT_MIN = -0x80000000


@intrinsic
def stack_tile(typingctx, rows, cols, dtype):
    """Pointer to rows * cols (literal ints) values of dtype on the stack: a register
    tile, which LLVM keeps in vector registers."""
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(cols, types.IntegerLiteral)):
        return None
    size = rows.literal_value * cols.literal_value
    element = dtype.dtype
    def codegen(context, builder, sig, args):
        return cgutils.alloca_once(builder, context.get_value_type(element), size=size)
    return types.CPointer(element)(rows, cols, dtype), codegen


@intrinsic
def _as_float(typingctx, x):
    """Reinterpret int32 bits as float32 (no conversion)."""
    if x != types.int32:
        return None
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


# ---------------------------------------------------------------- packing

@register_jitable
def encode_a(v):
    """(magnitude, threshold) of an A entry: its products are normal iff key_b > threshold."""
    mag = np.int32(v & bits.MAG)
    return mag, np.int32(THR_BASE - mag if mag >= bits.MIN_NORMAL else INT_MAX)


@register_jitable
def encode_b(v):
    """(magnitude, key) of a B entry; zero and subnormal B get the key INT_MIN."""
    mag = np.int32(v & bits.MAG)
    return mag, np.int32(mag if mag >= bits.MIN_NORMAL else INT_MIN)


@register_jitable
def pack_a_panel(x, ip, packed, bound):
    """Rows ip*MR.. of x (M, K) -> packed (2, MR, K): bits, threshold; bound[kc] = (min, max) |a|.

    Padding rows (1.0) are left out of the bounds: their products are never stored.
    """
    m, k_total = x.shape
    i0 = ip * MR
    ni = min(MR, m - i0)
    pad_thr = encode_a(bits.ONE)[1]
    for kc in range(bound.shape[0]):
        k0 = kc * KC
        k1 = min(k0 + KC, k_total)
        lo = np.int32(INT_MAX)
        hi = np.int32(0)
        for r in range(ni):
            src = x[i0 + r, k0:k1]
            dst_bits = packed[0, r, k0:k1]
            dst_thr = packed[1, r, k0:k1]
            for k in range(k1 - k0):
                v = src[k]
                mag, thr = encode_a(v)
                dst_bits[k] = v
                dst_thr[k] = thr
                lo = min(lo, mag)
                hi = max(hi, mag)
        for r in range(ni, MR):
            for k in range(k0, k1):
                packed[0, r, k] = bits.ONE
                packed[1, r, k] = pad_thr
        bound[kc, 0] = lo
        bound[kc, 1] = hi


@register_jitable
def pack_b_panel(y, jp, packed, bound):
    """Columns jp*NR.. of y (K, N) -> packed (2, K, NR): bits - ONE, key; bound[kc] = (min, max) |b|.

    Padding columns (1.0) are left out of the bounds.
    """
    k_total, n = y.shape
    j0 = jp * NR
    nj = min(NR, n - j0)
    for kc in range(bound.shape[0]):
        lo = np.int32(INT_MAX)
        hi = np.int32(0)
        for k in range(kc * KC, min(kc * KC + KC, k_total)):
            src = y[k, j0:j0 + nj]
            eb = packed[0, k]
            key = packed[1, k]
            for j in range(NR):                     # full width: vectorises for any nj
                real = j < nj
                v = src[j] if real else bits.ONE
                mag, kj = encode_b(v)
                eb[j] = np.int32(v - bits.ONE)      # wraps: the sign rides along
                key[j] = kj
                lo = min(lo, mag if real else INT_MAX)
                hi = max(hi, mag if real else 0)
        bound[kc, 0] = lo
        bound[kc, 1] = hi


@cpu_kernel(parallel=True)
def pack(x, y, pa, a_bound, pb, b_bound):
    """Pack the stacks x (nbA, M, K) and y (nbB, K, N), int32 bits with any strides.

    pa (nbA, M/MR, 2, MR, K) and pb (nbB, N/NR, 2, K, NR), bounds per K chunk.
    Tasks are of one size (a B panel, or NR / MR micro-panels of A), so that the
    threads' equal shares of them are equal work.
    """
    per_task = NR // MR             # A micro-panels per task: as much data as one B panel
    n_ip = pa.shape[1]
    a_tasks = (n_ip + per_task - 1) // per_task
    n_a = x.shape[0] * a_tasks
    for t in prange(n_a + y.shape[0] * pb.shape[1]):
        if t < n_a:
            z = t // a_tasks
            ip0 = (t - z * a_tasks) * per_task
            for ip in range(ip0, min(ip0 + per_task, n_ip)):
                pack_a_panel(x[z], ip, pa[z, ip], a_bound[z, ip])
        else:
            z = (t - n_a) // pb.shape[1]
            jp = t - n_a - z * pb.shape[1]
            pack_b_panel(y[z], jp, pb[z, jp], b_bound[z, jp])


# ---------------------------------------------------------- register tiles
# a: (2, MR, K) packed A micro-panel, b: (2, K, NR) packed B panel, tile: (MR, NR) float32.
# The two planes are separate so that the fast loop streams only the first.

@register_jitable
def load_acc(acc, dst, base, rs, first):
    """acc = the MR x NR block at dst[base + r * rs + j], or zeros for the first K chunk."""
    for r in range(MR):
        row = dst[base + r * rs:base + r * rs + NR]
        for j in range(NR):
            acc[r, j] = 0.0 if first else row[j]


@register_jitable
def store_acc(acc, dst, base, rs):
    for r in range(MR):
        row = dst[base + r * rs:base + r * rs + NR]
        for j in range(NR):
            row[j] = acc[r, j]


@register_jitable
def tile_fast(dst, base, rs, first, a, b, k0, k1):
    """Every product is normal: one int add and one float add per term."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    load_acc(acc, dst, base, rs, first)
    for k in range(k0, k1):
        eb = b[0, k]
        for r in range(MR):
            ar = a[0, r, k]
            for j in range(NR):
                acc[r, j] += _as_float(np.int32(ar + eb[j]))
    store_acc(acc, dst, base, rs)


@register_jitable
def tile_masked(dst, base, rs, first, a, b, k0, k1):
    """No product overflows; a product that is zero or underflows is skipped."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    load_acc(acc, dst, base, rs, first)
    for k in range(k0, k1):
        eb = b[0, k]
        key = b[1, k]
        for j in range(NR):           # j outer: fewer live registers than r outer
            ebj = eb[j]
            keyj = key[j]
            for r in range(MR):
                s = acc[r, j]
                t = s + _as_float(np.int32(a[0, r, k] + ebj))
                acc[r, j] = t if keyj > a[1, r, k] else s
    store_acc(acc, dst, base, rs)


@register_jitable
def tile_exact(dst, base, rs, first, a, b, k0, k1):
    """Any operands (inf, NaN, overflow): the scalar bits.pam, same order of sums."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    load_acc(acc, dst, base, rs, first)
    for k in range(k0, k1):
        eb = b[0, k]
        for r in range(MR):
            for j in range(NR):
                p = bits.pam(a[0, r, k], np.int32(eb[j] + bits.ONE))
                acc[r, j] += _as_float(np.int32(p))
    store_acc(acc, dst, base, rs)


@register_jitable
def tile_kind(a_bound, b_bound):
    """0 fast, 1 masked, 2 exact, from the blocks' magnitude bounds (int64 sums)."""
    a_lo = np.int64(a_bound[0])
    a_hi = np.int64(a_bound[1])
    b_lo = np.int64(b_bound[0])
    b_hi = np.int64(b_bound[1])
    if a_hi >= bits.INF or b_hi >= bits.INF or a_hi + b_hi - bits.ONE >= bits.INF:
        return 2
    if a_lo >= bits.MIN_NORMAL and b_lo >= bits.MIN_NORMAL and \
            a_lo + b_lo - bits.ONE >= bits.MIN_NORMAL:
        return 0
    return 1


@register_jitable
def open_tile(out, base, rs, cs, ni, nj, scratch, rows, cols, first):
    """Where the ni x nj outputs at out[base + r * rs + j * cs] accumulate as a rows x cols
    register tile: (out, base, rs) when they are whole contiguous rows, else the flat
    scratch (holding their values unless this is the first chunk of the sum)."""
    if ni == rows and nj == cols and cs == 1:
        return out, base, rs
    if not first:
        for r in range(ni):
            for j in range(nj):
                scratch[r * cols + j] = out[base + r * rs + j * cs]
    return scratch, 0, cols


@register_jitable
def close_tile(out, base, rs, cs, ni, nj, scratch, rows, cols):
    """Copy a tile that open_tile put in scratch back to its outputs."""
    if not (ni == rows and nj == cols and cs == 1):
        for r in range(ni):
            for j in range(nj):
                out[base + r * rs + j * cs] = scratch[r * cols + j]


@register_jitable
def gemm_block(pa, a_bound, pb, b_bound, ip0, ip1, jp0, jp1, m, n, out, base0, rs, cs):
    """Micro-panels ip0..ip1-1 of A times column panels jp0..jp1-1 of one product, into out.

    pa (M/MR, 2, MR, K), pb (N/NR, 2, K, NR) packed; out is flat, the product's
    C[0, 0] at base0, rows rs and columns cs apart. A tile whose place is not
    MR full contiguous rows of NR (edges, a transposed out) is accumulated in
    a scratch tile and copied.
    """
    k_total = pa.shape[3]
    scratch = carray(stack_tile(MR, NR, np.float32), (MR * NR,))
    for kc in range(a_bound.shape[1]):
        k0 = kc * KC
        k1 = min(k0 + KC, k_total)
        for jp in range(jp0, jp1):      # the K chunk of the row block stays in L2 across panels
            j0 = jp * NR
            nj = min(NR, n - j0)
            for ip in range(ip0, ip1):
                i0 = ip * MR
                ni = min(MR, m - i0)
                base = base0 + i0 * rs + j0 * cs
                dst, dst_base, dst_rs = open_tile(out, base, rs, cs, ni, nj, scratch, MR, NR,
                                                  kc == 0)
                kind = tile_kind(a_bound[ip, kc], b_bound[jp, kc])
                if kind == 0:
                    tile_fast(dst, dst_base, dst_rs, kc == 0, pa[ip], pb[jp], k0, k1)
                elif kind == 1:
                    tile_masked(dst, dst_base, dst_rs, kc == 0, pa[ip], pb[jp], k0, k1)
                else:
                    tile_exact(dst, dst_base, dst_rs, kc == 0, pa[ip], pb[jp], k0, k1)
                close_tile(out, base, rs, cs, ni, nj, scratch, MR, NR)


@cpu_kernel(parallel=True)
def pam_gemm_packed(pa, a_bound, pb, b_bound, a_index, b_index, m, n, mc, out, out_strides):
    """C[z] = A[a_index[z]] ⊙@ B[b_index[z]] from operands packed by ``pack``.

    out is a flat float32 array; out_strides (batch, row, column) in elements,
    so a transposed or batched destination needs no second specialisation.
    Tasks are (z, row block of mc micro-panels, group of NG column panels).
    """
    n_ip = pa.shape[1]
    n_ib = (n_ip + mc - 1) // mc
    n_jp = pb.shape[1]
    n_jg = (n_jp + NG - 1) // NG
    zs, rs, cs = out_strides
    for t in prange(a_index.shape[0] * n_ib * n_jg):
        z = t // (n_ib * n_jg)
        ib = (t // n_jg) % n_ib
        jg = t % n_jg
        za = a_index[z]
        zb = b_index[z]
        gemm_block(pa[za], a_bound[za], pb[zb], b_bound[zb], ib * mc, min(ib * mc + mc, n_ip),
                   jg * NG, min(jg * NG + NG, n_jp), m, n, out, z * zs, rs, cs)


@cpu_kernel(parallel=True)
def pam_gemm_batched(x, y, a_index, b_index, pa, a_bound, pb, b_bound, out, out_strides):
    """Many small products: one task per z packs its operands into the thread's
    own buffers (pa[thread] (M/MR, 2, MR, K), ...) while they fit in L2 and
    multiplies them at once, one parallel launch in all."""
    zs, rs, cs = out_strides
    m, n = x.shape[1], y.shape[2]
    n_ip = pa.shape[1]
    n_jp = pb.shape[1]
    for z in prange(a_index.shape[0]):
        me = numba.get_thread_id()
        for ip in range(n_ip):
            pack_a_panel(x[a_index[z]], ip, pa[me, ip], a_bound[me, ip])
        for jp in range(n_jp):
            pack_b_panel(y[b_index[z]], jp, pb[me, jp], b_bound[me, jp])
        for ip0 in range(0, n_ip, MC):
            for jp in range(n_jp):
                gemm_block(pa[me], a_bound[me], pb[me], b_bound[me], ip0, min(ip0 + MC, n_ip),
                           jp, jp + 1, m, n, out, z * zs, rs, cs)


# ------------------------------------------------------------- Python API

_workspace = threading.local()


def _buffer(name, shape):
    """An int32 array of ``shape`` carved from a per-thread buffer reused between calls."""
    size = math.prod(shape)
    buf = getattr(_workspace, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), np.int32)
        setattr(_workspace, name, buf)
    return buf[:size].reshape(shape)


def _float32(x, op):
    """x as a float32 ndarray, keeping its strides (a transposed view stays a view)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{op}: expected real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _operands(a, b, transpose_a, transpose_b, op):
    """Normalise to 3-D stacks (nbA, M, K), (nbB, K, N) + batch index maps, np.matmul rules.

    Returns (a3, b3, a_index, b_index, batch, out_shape); a3/b3 are int32 views,
    not copies, unless a batch reshape needs one.
    """
    a = _float32(a, op)
    b = _float32(b, op)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"{op}: operands must have at least one dimension")
    if (transpose_a and a.ndim < 2) or (transpose_b and b.ndim < 2):
        raise ValueError(f"{op}: a 1-D operand cannot be transposed")
    if transpose_a:
        a = a.swapaxes(-1, -2)
    if transpose_b:
        b = b.swapaxes(-1, -2)
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_a:
        a = a[None, :]
    if vector_b:
        b = b[:, None]
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not align")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a3 = a.reshape((math.prod(a.shape[:-2]),) + a.shape[-2:]).view(np.int32)
    b3 = b.reshape((math.prod(b.shape[:-2]),) + b.shape[-2:]).view(np.int32)
    out_shape = batch + (a.shape[-2], b.shape[-1])
    if vector_a:
        out_shape = out_shape[:-2] + out_shape[-1:]
    if vector_b:
        out_shape = out_shape[:-1]
    return a3, b3, _batch_index(a.shape[:-2], batch), _batch_index(b.shape[:-2], batch), \
        batch, out_shape


def _batch_index(shape, batch):
    """For each product of the broadcast ``batch``, its operand's index in the stack of ``shape``."""
    if shape == batch:
        return np.arange(math.prod(batch))
    return np.broadcast_to(np.arange(math.prod(shape)).reshape(shape), batch).ravel()


def _row_block(n_row_panels, tasks_per_row_block, most):
    """Micro-panels per task: ``most``, fewer while that leaves under four tasks per
    thread. Only the output is split, never the sum, so the bits do not change."""
    tasks = n_row_panels * tasks_per_row_block
    return max(1, min(most, tasks // (4 * numba.get_num_threads())))


def _gemm(x, y, x_index, y_index, out, out_strides):
    """out[z] = x[x_index[z]] ⊙@ y[y_index[z]] for int32 stacks x (.., M, K), y (.., K, N)."""
    m, k = x.shape[1:]
    n = y.shape[2]
    n_ip, n_jp, n_kc = (m + MR - 1) // MR, (n + NR - 1) // NR, (k + KC - 1) // KC
    if x_index.size >= 4 * numba.get_num_threads() and (m * k + k * n) * 8 <= L2_BYTES:
        slots = numba.config.NUMBA_NUM_THREADS        # one workspace per possible thread id
        pa = _buffer("a", (slots, n_ip, 2, MR, k))
        pb = _buffer("b", (slots, n_jp, 2, k, NR))
        a_bound = _buffer("a_bound", (slots, n_ip, n_kc, 2))
        b_bound = _buffer("b_bound", (slots, n_jp, n_kc, 2))
        pam_gemm_batched(x, y, x_index, y_index, pa, a_bound, pb, b_bound, out, out_strides)
        return
    pa = _buffer("a", (x.shape[0], n_ip, 2, MR, k))
    pb = _buffer("b", (y.shape[0], n_jp, 2, k, NR))
    a_bound = _buffer("a_bound", (x.shape[0], n_ip, n_kc, 2))
    b_bound = _buffer("b_bound", (y.shape[0], n_jp, n_kc, 2))
    pack(x, y, pa, a_bound, pb, b_bound)
    mc = _row_block(n_ip, x_index.size * ((n_jp + NG - 1) // NG), MC)
    pam_gemm_packed(pa, a_bound, pb, b_bound, x_index, y_index, m, n, mc, out, out_strides)


def pam_matmul(a, b, transpose_a=False, transpose_b=False):
    """PAM matrix product with np.matmul's shape rules (1-D, 2-D, broadcast batches).

    ``transpose_a`` / ``transpose_b`` swap the last two axes of that operand
    first (``a.T @ b``, ``a @ b.T`` for the backward pass) without copying it.
    Returns a new C-contiguous float32 array.
    """
    a3, b3, a_index, b_index, batch, out_shape = _operands(
        a, b, transpose_a, transpose_b, "pam_matmul")
    m, k = a3.shape[1:]
    n = b3.shape[2]
    if k == 0:
        return np.zeros(out_shape, np.float32)
    out = np.empty((a_index.size, m, n), np.float32)
    if out.size == 0:
        return out.reshape(out_shape)
    if b3.shape[0] == 1 and a_index.size > 1:
        # one B for the whole batch: a single GEMM of the stacked rows, same sums
        a3 = a3.reshape(1, -1, k)
        m = a3.shape[1]
        a_index = b_index = np.zeros(1, np.int64)
    if n < NR and m > n:
        # few columns: C^T = B^T ⊙@ A^T fills the NR-wide tiles; same sums, same order
        _gemm(b3.swapaxes(1, 2), a3.swapaxes(1, 2), b_index, a_index,
              out.reshape(-1), (m * n, 1, n))
    else:
        _gemm(a3, b3, a_index, b_index, out.reshape(-1), (m * n, n, 1))
    return out.reshape(out_shape)
