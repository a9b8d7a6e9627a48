"""PAM matrix multiply: C[i, j] = sum_k pam(A[i, k], B[k, j]) at BLAS speed, bit-exact.

Semantics: every C[i, j] is the float32 sum, in increasing k and starting from
+0.0, of the PAM products ``bits.pam(A[i, k], B[k, j])``. Each output element
is owned by one thread and summed in that order, so the result is
bit-identical to a naive scalar loop for any thread count (NaNs compare as
NaN: which NaN bit pattern comes out of NaN + NaN is the hardware's choice).

How it is fast (GotoBLAS structure, one integer add + one float add per term;
the identities are named in bits.py, see docs/gemm.md):
- Both operands are packed once per call into per-thread buffers reused
  between calls. A goes to micro-panels of MR rows: a plane of bits and a
  plane of ``pam_threshold``s; B to panels of NR columns: a plane of
  ``pam_bias(b) = bits - ONE`` and a plane of ``flushed_magnitude``s (keys).
  A product is nonzero exactly when key > threshold, and its bits are then
  ``pam_biased(a, pam_bias(b))``, one add. The fast loop reads only the
  first planes.
- Packing records each block's smallest and largest magnitude per K chunk;
  per MR x NR tile and K chunk ``tile_path`` picks FAST (every product
  normal), MASKED (the float add is skipped where the key test fails;
  skipping a signed zero is exact because the sum starts at +0.0 and so is
  never -0.0) or EXACT (the scalar ``bits.pam``, for the rare tile that holds
  inf, NaN or huge values).
- Tasks are (batch element, row block of up to MC micro-panels, NG column
  panels), the row blocks shrinking until every thread has work (K is never
  split). Many small products (attention heads) instead run one task per
  batch element that packs its own operands into L2 and multiplies them.
- The tile loops and kernels are compiled per vector width
  (``gemm_kernels``); ``THIS_CPU`` is the one tuning.py picks for this CPU
  (512 bits with AVX-512: at LLVM's Intel default of 256 the tile spills).

Transposed operands are read in place by the packing; a product with few
columns is computed as (B^T A^T)^T, which PAM's commutativity makes the same
sums in the same order, and a batch against one 2-D B as a single GEMM of
the stacked rows.
"""
import functools
from collections import namedtuple

import numba
import numpy as np
from numba import carray, prange
from numba.extending import register_jitable

from .. import bits, tuning
from ..jit import cpu_kernel
from .host import broadcast_index, float32_view, row_block, stack, workspace
from .shapes import matmul_shapes
from .tiles import FAST, MASKED, Panels, Place, as_float, stack_tile, tile_machinery, tile_path

MR = 4          # rows of a register tile
NR = 64         # columns of a register tile (4 zmm vectors of int32/float32)
KC = 256        # K chunk: a B panel's chunk (both planes) is 128 KiB, in L2
MC = 32         # micro-panels of A per task (128 rows), at most
NG = 4          # column panels per task: a K chunk of its A rows is reused from L2 NG times
L2_BYTES = 1 << 19  # a batch element whose packed operands fit here is packed inside its task

load_tile, store_tile, open_tile, close_tile = tile_machinery(MR, NR)


# ---------------------------------------------------------------- packing

@register_jitable
def pack_a_panel(x, ip, panel, bound):
    """Rows ip*MR.. of x (M, K) -> panel (2, MR, K): bits, pam_threshold;
    bound[kc] = (min, max) |a|. Padding rows (1.0) are left out of the bounds:
    their products are never stored."""
    m, k_total = x.shape
    i0 = ip * MR
    ni = min(MR, m - i0)
    pad_threshold = bits.pam_threshold(bits.ONE, 0)
    for kc in range(bound.shape[0]):
        k0 = kc * KC
        k1 = min(k0 + KC, k_total)
        lo, hi = np.int32(bits.INT32_MAX), np.int32(0)
        for r in range(ni):
            src = x[i0 + r, k0:k1]
            dst_bits = panel[0, r, k0:k1]
            dst_threshold = panel[1, r, k0:k1]
            for k in range(k1 - k0):
                v = src[k]
                mag = np.int32(v & bits.MAG)
                dst_bits[k] = v
                dst_threshold[k] = bits.pam_threshold(v, 0)
                lo = min(lo, mag)
                hi = max(hi, mag)
        for r in range(ni, MR):
            for k in range(k0, k1):
                panel[0, r, k] = bits.ONE
                panel[1, r, k] = pad_threshold
        bound[kc, 0] = lo
        bound[kc, 1] = hi


@register_jitable
def pack_b_panel(y, jp, panel, bound):
    """Columns jp*NR.. of y (K, N) -> panel (2, K, NR): pam_bias, flushed_magnitude;
    bound[kc] = (min, max) |b|. Padding columns (1.0) are left out of the bounds."""
    k_total, n = y.shape
    j0 = jp * NR
    nj = min(NR, n - j0)
    for kc in range(bound.shape[0]):
        lo, hi = np.int32(bits.INT32_MAX), np.int32(0)
        for k in range(kc * KC, min(kc * KC + KC, k_total)):
            src = y[k, j0:j0 + nj]
            biased = panel[0, k]
            key = panel[1, k]
            for j in range(NR):                     # full width: vectorises for any nj
                real = j < nj
                v = src[j] if real else bits.ONE
                mag = np.int32(v & bits.MAG)
                biased[j] = bits.pam_bias(v)
                key[j] = bits.flushed_magnitude(v)
                lo = min(lo, mag if real else bits.INT32_MAX)
                hi = max(hi, mag if real else 0)
        bound[kc, 0] = lo
        bound[kc, 1] = hi


@cpu_kernel(parallel=True)
def pack_operands(x, y, packed_a, packed_b):
    """Pack the stacks x (nbA, M, K) and y (nbB, K, N), int32 bits with any strides, into
    the Panels packed_a, planes (nbA, M/MR, 2, MR, K), and packed_b, planes (nbB, N/NR, 2, K, NR),
    with their bounds per K chunk.

    Tasks are of one size (a B panel, or NR / MR micro-panels of A), so that the
    threads' equal shares of them are equal work.
    """
    per_task = NR // MR             # A micro-panels per task: as much data as one B panel
    n_ip = packed_a.planes.shape[1]
    n_jp = packed_b.planes.shape[1]
    a_tasks = (n_ip + per_task - 1) // per_task
    n_a = x.shape[0] * a_tasks
    for t in prange(n_a + y.shape[0] * n_jp):
        if t < n_a:
            z = t // a_tasks
            ip0 = (t - z * a_tasks) * per_task
            for ip in range(ip0, min(ip0 + per_task, n_ip)):
                pack_a_panel(x[z], ip, packed_a.planes[z, ip], packed_a.bound[z, ip])
        else:
            z = (t - n_a) // n_jp
            jp = t - n_a - z * n_jp
            pack_b_panel(y[z], jp, packed_b.planes[z, jp], packed_b.bound[z, jp])


# ---------------------------------------------------------- register tiles
# a: (2, MR, K) packed A micro-panel, b: (2, K, NR) packed B panel, dst: a Place
# of whole rows. The two planes are separate so that the fast loop streams only the first.

GemmKernels = namedtuple("GemmKernels", "packed batched")


@functools.cache
def gemm_kernels(vector_bits):
    """The tile loops and kernels compiled for vector_bits-wide vectors (tuning.py); every
    variant gives the same bits. The variant this CPU runs is ``THIS_CPU``."""
    @register_jitable
    def tile_fast(dst, first, a, b, k0, k1):
        """Every product is normal: one int add and one float add per term."""
        acc = carray(stack_tile(MR, NR, np.float32, vector_bits), (MR, NR))
        load_tile(acc, dst, first)
        for k in range(k0, k1):
            biased = b[0, k]
            for r in range(MR):
                ar = a[0, r, k]
                for j in range(NR):
                    acc[r, j] += as_float(bits.pam_biased(ar, biased[j]))
        store_tile(acc, dst)


    @register_jitable
    def tile_masked(dst, first, a, b, k0, k1):
        """No product overflows; a product that is zero or flushes is skipped."""
        acc = carray(stack_tile(MR, NR, np.float32, vector_bits), (MR, NR))
        load_tile(acc, dst, first)
        for k in range(k0, k1):
            biased = b[0, k]
            key = b[1, k]
            for j in range(NR):           # j outer: fewer live registers than r outer
                biased_j = biased[j]
                key_j = key[j]
                for r in range(MR):
                    s = acc[r, j]
                    t = s + as_float(bits.pam_biased(a[0, r, k], biased_j))
                    acc[r, j] = t if key_j > a[1, r, k] else s
        store_tile(acc, dst)


    @register_jitable
    def tile_exact(dst, first, a, b, k0, k1):
        """Any operands (inf, NaN, overflow): the scalar bits.pam, same order of sums."""
        acc = carray(stack_tile(MR, NR, np.float32, vector_bits), (MR, NR))
        load_tile(acc, dst, first)
        for k in range(k0, k1):
            biased = b[0, k]
            for r in range(MR):
                for j in range(NR):
                    p = bits.pam(a[0, r, k], np.int32(biased[j] + bits.ONE))
                    acc[r, j] += as_float(np.int32(p))
        store_tile(acc, dst)


    @register_jitable
    def gemm_block(a, b, row_panels, col_panels, m, n, out):
        """Micro-panels row_panels = (ip0, ip1) of A times column panels (jp0, jp1) of B, into out.

        a, b: Panels of one product, a.planes (M/MR, 2, MR, K), b.planes (N/NR, 2, K, NR);
        out: the Place of the product's C[0, 0].
        """
        k_total = a.planes.shape[3]
        scratch = carray(stack_tile(MR, NR, np.float32, vector_bits), (MR * NR,))
        for kc in range(a.bound.shape[1]):
            k0 = kc * KC
            k1 = min(k0 + KC, k_total)
            first = kc == 0
            for jp in range(col_panels[0], col_panels[1]):   # the row block's K chunk stays in L2
                j0 = jp * NR
                nj = min(NR, n - j0)
                for ip in range(row_panels[0], row_panels[1]):
                    i0 = ip * MR
                    ni = min(MR, m - i0)
                    place = Place(out.values, out.base + i0 * out.row_step + j0 * out.col_step,
                                  out.row_step, out.col_step)
                    dst = open_tile(place, ni, nj, scratch, first)
                    a_bound = a.bound[ip, kc]
                    b_bound = b.bound[jp, kc]
                    path = tile_path(a_bound[0], a_bound[1], b_bound[0], b_bound[1])
                    if path == FAST:
                        tile_fast(dst, first, a.planes[ip], b.planes[jp], k0, k1)
                    elif path == MASKED:
                        tile_masked(dst, first, a.planes[ip], b.planes[jp], k0, k1)
                    else:
                        tile_exact(dst, first, a.planes[ip], b.planes[jp], k0, k1)
                    close_tile(place, ni, nj, scratch)


    @cpu_kernel(parallel=True, name=tuning.kernel_name("pam_gemm_packed", vector_bits))
    def pam_gemm_packed(packed_a, packed_b, pairs, dims, out, out_strides):
        """C[z] = A[pairs[0][z]] ⊙@ B[pairs[1][z]] from operands packed by ``pack_operands``.

        dims = (m, n, mc); out is a flat float32 array, out_strides (batch, row,
        column) in elements, so a transposed or batched destination needs no
        second specialisation. Tasks are (z, row block of mc micro-panels, group
        of NG column panels).
        """
        a_index, b_index = pairs
        m, n, mc = dims
        n_ip = packed_a.planes.shape[1]
        n_ib = (n_ip + mc - 1) // mc
        n_jp = packed_b.planes.shape[1]
        n_jg = (n_jp + NG - 1) // NG
        zs, rs, cs = out_strides
        for t in prange(a_index.shape[0] * n_ib * n_jg):
            z = t // (n_ib * n_jg)
            ib = (t // n_jg) % n_ib
            jg = t % n_jg
            za = a_index[z]
            zb = b_index[z]
            gemm_block(Panels(packed_a.planes[za], packed_a.bound[za]),
                       Panels(packed_b.planes[zb], packed_b.bound[zb]),
                       (ib * mc, min(ib * mc + mc, n_ip)), (jg * NG, min(jg * NG + NG, n_jp)),
                       m, n, Place(out, z * zs, rs, cs))


    @cpu_kernel(parallel=True, name=tuning.kernel_name("pam_gemm_batched", vector_bits))
    def pam_gemm_batched(x, y, pairs, packed_a, packed_b, out, out_strides):
        """Many small products: one task per z packs its operands into the thread's own
        buffers (packed_a.planes[thread] (M/MR, 2, MR, K), ...) while they fit in L2 and
        multiplies them at once, one parallel launch in all."""
        a_index, b_index = pairs
        zs, rs, cs = out_strides
        m, n = x.shape[1], y.shape[2]
        n_ip = packed_a.planes.shape[1]
        n_jp = packed_b.planes.shape[1]
        for z in prange(a_index.shape[0]):
            me = numba.get_thread_id()
            a = Panels(packed_a.planes[me], packed_a.bound[me])
            b = Panels(packed_b.planes[me], packed_b.bound[me])
            for ip in range(n_ip):
                pack_a_panel(x[a_index[z]], ip, a.planes[ip], a.bound[ip])
            for jp in range(n_jp):
                pack_b_panel(y[b_index[z]], jp, b.planes[jp], b.bound[jp])
            for ip0 in range(0, n_ip, MC):
                for jp in range(n_jp):
                    gemm_block(a, b, (ip0, min(ip0 + MC, n_ip)), (jp, jp + 1), m, n,
                               Place(out, z * zs, rs, cs))

    return GemmKernels(pam_gemm_packed, pam_gemm_batched)


THIS_CPU = gemm_kernels(tuning.VECTOR_BITS_HERE)


# ------------------------------------------------------------- Python API

def packed_workspace(name, stacks, n_panels, panel, n_chunks):
    """Panels in the per-thread workspace: planes (stacks, n_panels) + panel, bounds per chunk."""
    return Panels(workspace(name, (stacks, n_panels) + panel),
                  workspace(name + "_bound", (stacks, n_panels, n_chunks, 2)))


def gemm(x, y, x_index, y_index, out, out_strides):
    """out[z] = x[x_index[z]] ⊙@ y[y_index[z]] for int32 stacks x (.., M, K), y (.., K, N)."""
    m, k = x.shape[1:]
    n = y.shape[2]
    n_ip, n_jp, n_kc = (m + MR - 1) // MR, (n + NR - 1) // NR, (k + KC - 1) // KC
    if x_index.size >= 4 * numba.get_num_threads() and (m * k + k * n) * 8 <= L2_BYTES:
        slots = numba.config.NUMBA_NUM_THREADS        # one workspace per possible thread id
        THIS_CPU.batched(x, y, (x_index, y_index),
                         packed_workspace("a", slots, n_ip, (2, MR, k), n_kc),
                         packed_workspace("b", slots, n_jp, (2, k, NR), n_kc), out, out_strides)
        return
    packed_a = packed_workspace("a", x.shape[0], n_ip, (2, MR, k), n_kc)
    packed_b = packed_workspace("b", y.shape[0], n_jp, (2, k, NR), n_kc)
    pack_operands(x, y, packed_a, packed_b)
    mc = row_block(n_ip, x_index.size * ((n_jp + NG - 1) // NG), MC)
    THIS_CPU.packed(packed_a, packed_b, (x_index, y_index), (m, n, mc), out, out_strides)


def pam_matmul(a, b, transpose_a=False, transpose_b=False):
    """PAM matrix product with np.matmul's shape rules (1-D, 2-D, broadcast batches).

    ``transpose_a`` / ``transpose_b`` swap the last two axes of that operand
    first (``a.T @ b``, ``a @ b.T`` for the backward pass) without copying it.
    Returns a new C-contiguous float32 array.
    """
    a = float32_view(a, "pam_matmul")
    b = float32_view(b, "pam_matmul")
    shapes = matmul_shapes(a.shape, b.shape, "pam_matmul", transpose_a, transpose_b)
    m, k, n = shapes.m, shapes.k, shapes.n
    if shapes.k == 0:
        return np.zeros(shapes.out_shape, np.float32)
    a_index = broadcast_index(shapes.batch_a, shapes.batch)
    b_index = broadcast_index(shapes.batch_b, shapes.batch)
    out = np.empty((a_index.size, m, n), np.float32)
    if out.size == 0:
        return out.reshape(shapes.out_shape)
    a3 = stack(a.swapaxes(-1, -2) if transpose_a else a, shapes.batch_a, m, k)
    b3 = stack(b.swapaxes(-1, -2) if transpose_b else b, shapes.batch_b, k, n)
    if b3.shape[0] == 1 and a_index.size > 1:
        # one B for the whole batch: a single GEMM of the stacked rows, same sums
        a3 = a3.reshape(1, -1, k)
        m = a3.shape[1]
        a_index = b_index = np.zeros(1, np.int64)
    if n < NR and m > n:
        # few columns: C^T = B^T ⊙@ A^T fills the NR-wide tiles; same sums, same order
        gemm(b3.swapaxes(1, 2), a3.swapaxes(1, 2), b_index, a_index,
             out.reshape(-1), (m * n, 1, n))
    else:
        gemm(a3, b3, a_index, b_index, out.reshape(-1), (m * n, n, 1))
    return out.reshape(shapes.out_shape)
