"""Exact derivatives of the PAM matrix product (SPEC section 4), at GEMM speed.

da[i, k] = sum_j dY[i, j] ⊙ pam_slope(A[i, k], B[k, j]) and
db[k, j] = sum_i dY[i, j] ⊙ pam_slope(B[k, j], A[i, k]): each output is the
float32 sum from +0.0 in increasing j (resp. i) of exact PAMs by signed powers
of two; one thread owns each output, so the result is bit-identical to the
scalar definition for any thread count.

How a term becomes one float add and three int ops (shown for da; db swaps
the roles of A and B): with g = dY[i, j], the slope is
s = sign(B) * 2**(E_B + c), c = [M_A + M_B >= 1], whose bits are
``(B + mant(A)) & ~MANT``: adding A's mantissa field to B's bits carries into
B's exponent exactly when c = 1. The PAM by s is exact, and while its result
is a normal number its bits are ``(g - ONE) + s`` (the carry-free add also
gives the sign). So per term: ``t = ((S + P) & ~MANT) + G`` with the packed
planes S = B (slope base), P = mant(A) (carry) and G = dY - ONE (da moves
the - ONE into P instead, ONE's mantissa field being zero, and broadcasts dY
as it is).
- Per tile and reduction chunk, the magnitude bounds of dY and of the slope
  bases decide between three loops, as in the forward GEMM: *fast* (every
  term is a normal number), *masked* (terms may be zero or underflow, none
  overflows: a term is skipped unless its slope's exponent field
  ``(S + P) & EXP`` beats a threshold of g; skipping a signed zero is exact
  because the sum starts at +0.0) and *exact* (inf, NaN, huge values, a NaN
  carry operand: the scalar ``bits.pam(g, bits.pam_slope(...))``).
- An MR x NR tile of outputs keeps its accumulators in registers while the
  reduction runs innermost, vectorised over the NR contiguous outputs; P is
  the tile's own MR x NR block of mantissas. Each kernel first packs, in
  parallel, its vector operand into NR-wide panels (B^T for da; dY as G and
  thresholds for db) and its broadcast operand where needed (A for db; da
  reads dY's rows in place), flushing subnormal slope bases to signed zero
  as pam_slope treats them, with per-chunk magnitude bounds.
- Tasks are (batch element, block of row micro-panels, column panel), the
  blocks shrinking until every thread has work.
Cost: three int ops and one float add per term against the forward GEMM's
one and one; measured about 2x the forward GEMM per derivative (so about 4x
for both), against about 35x for the plain loops over the scalar functions
it replaces (benchmarks/gemm_grads.py).
"""
import numpy as np
from numba import carray, prange
from numba.extending import register_jitable

from . import bits
from .gemm import (INT_MAX, THR_BASE, _as_float, _buffer, _float32, _operands, _row_block,
                   close_tile, open_tile, stack_tile)
from .jit import cpu_kernel

MR = 8            # rows of a register tile
NR = 32           # columns of a register tile (2 zmm vectors)
KC = 512          # reduction chunk: one bound per chunk of a packed panel
MC = 8            # micro-panels per task (64 rows), at most
EXP = bits.INF                              # exponent field
NOT_MANT = ~bits.MANT                       # sign and exponent
TOP_EXP = 1 << 30                            # top bit of the exponent field
FAST, MASKED, EXACT = 0, 1, 2


# ---------------------------------------------------------------- packing
# x is (reduction, columns); a panel is the columns w0.. of width out.shape[-1].

@register_jitable
def pack_grads(x, w0, out, bound):
    """out[0, q, w] = x[q, w0 + w] - ONE, out[1, q, w] = its term threshold;
    bound[chunk] = (min, max) |x| over the chunk's real entries. Padding: 0, INT_MAX."""
    rows, cols = x.shape
    width = out.shape[2]
    nw = min(width, cols - w0)
    for ch in range(bound.shape[0]):
        lo = np.int32(INT_MAX)
        hi = np.int32(0)
        for q in range(ch * KC, min(ch * KC + KC, rows)):
            src = x[q]
            g = out[0, q]
            thr = out[1, q]
            for w in range(nw):
                v = src[w0 + w]
                mag = np.int32(v & bits.MAG)
                g[w] = np.int32(v - bits.ONE)
                thr[w] = threshold(v, 0)
                lo = min(lo, mag)
                hi = max(hi, mag)
            for w in range(nw, width):
                g[w] = 0
                thr[w] = INT_MAX
        bound[ch, 0] = lo
        bound[ch, 1] = hi


@register_jitable
def pack_slopes(x, w0, out, bound):
    """out[q, w] = x[q, w0 + w], subnormals flushed to signed zero, padding +0;
    bound[chunk] = (min, max) of the flushed magnitudes over the real entries."""
    rows, cols = x.shape
    width = out.shape[1]
    nw = min(width, cols - w0)
    for ch in range(bound.shape[0]):
        lo = np.int32(INT_MAX)
        hi = np.int32(0)
        for q in range(ch * KC, min(ch * KC + KC, rows)):
            src = x[q]
            dst = out[q]
            for w in range(nw):
                v = src[w0 + w]
                mag = np.int32(v & bits.MAG)
                normal = mag >= bits.MIN_NORMAL
                dst[w] = v if normal else np.int32(v & bits.SIGN)
                mag = mag if normal else np.int32(0)
                lo = min(lo, mag)
                hi = max(hi, mag)
            for w in range(nw, width):
                dst[w] = 0
        bound[ch, 0] = lo
        bound[ch, 1] = hi


@register_jitable
def pack_slopes_t(y, w0, out, bound):
    """pack_slopes of y.T, reading y's rows (contiguous) rather than its columns."""
    cols, rows = y.shape
    width = out.shape[1]
    nw = min(width, cols - w0)
    for ch in range(bound.shape[0]):
        q0 = ch * KC
        q1 = min(q0 + KC, rows)
        lo = np.int32(INT_MAX)
        hi = np.int32(0)
        for w in range(nw):
            src = y[w0 + w]
            for q in range(q0, q1):
                v = src[q]
                mag = np.int32(v & bits.MAG)
                normal = mag >= bits.MIN_NORMAL
                out[q, w] = v if normal else np.int32(v & bits.SIGN)
                mag = mag if normal else np.int32(0)
                lo = min(lo, mag)
                hi = max(hi, mag)
        for q in range(q0, q1):
            for w in range(nw, width):
                out[q, w] = 0
        bound[ch, 0] = lo
        bound[ch, 1] = hi


@register_jitable
def row_bounds(x, r0, bound):
    """bound[chunk] = (min, max) |x| over rows r0..r0+MR (those that exist), chunk's columns."""
    for ch in range(bound.shape[0]):
        lo = np.int32(INT_MAX)
        hi = np.int32(0)
        for r in range(r0, min(r0 + MR, x.shape[0])):
            src = x[r, ch * KC:min(ch * KC + KC, x.shape[1])]
            for q in range(src.size):
                mag = np.int32(src[q] & bits.MAG)
                lo = min(lo, mag)
                hi = max(hi, mag)
        bound[ch, 0] = lo
        bound[ch, 1] = hi


@register_jitable
def threshold(g, offset):
    """offset + t(g), INT_MAX for a zero/subnormal g: the term pam(g, s) is a normal
    number iff |s| > t(g). Branch-free on purpose (LLVM turns a select here into a
    branch on g == 0, which mispredicts on gradients full of zeros)."""
    mag = np.int32(g & bits.MAG)
    # any normal slope beats MIN_NORMAL - 1
    t = np.int32(max(np.int32(THR_BASE - mag), np.int32(bits.MIN_NORMAL - 1)) + offset)
    tiny = np.int32(np.int32(mag - bits.MIN_NORMAL) >> 31)       # -1 for zero/subnormal g
    return np.int32(t | np.int32(tiny & INT_MAX))


@register_jitable
def carry_tile(x, r0, c0, p):
    """p[r, c] = mantissa field of x[r0 + r, c0 + c] (0 unless normal, padding 0).

    Returns True if the tile holds a NaN (its terms are NaN: the exact loop)."""
    nr = min(MR, x.shape[0] - r0)
    nc = min(NR, x.shape[1] - c0)
    hi = np.int32(0)
    p[:] = 0
    for r in range(nr):
        src = x[r0 + r, c0:c0 + nc]
        dst = p[r]
        for c in range(nc):
            v = src[c]
            mag = np.int32(v & bits.MAG)
            dst[c] = np.int32(v & bits.MANT) if mag >= bits.MIN_NORMAL else np.int32(0)
            hi = max(hi, mag)
    return hi > bits.INF


@register_jitable
def tile_kind(g_bound, s_bound):
    """FAST, MASKED or EXACT from the (min, max) magnitudes of dY and slope bases (int64)."""
    g_lo = np.int64(g_bound[0])
    g_hi = np.int64(g_bound[1])
    s_lo = np.int64(s_bound[0])
    s_hi = np.int64(s_bound[1])
    # |s| <= (s_hi & EXP) + MIN_NORMAL; the slope itself must be finite (E_B + c <= 254)
    if g_hi >= bits.INF or s_hi >= bits.INF - bits.MIN_NORMAL or \
            g_hi + (s_hi & EXP) + bits.MIN_NORMAL - bits.ONE >= bits.INF:
        return EXACT
    if g_lo >= bits.MIN_NORMAL and s_lo >= bits.MIN_NORMAL and \
            g_lo + (s_lo & EXP) - bits.ONE >= bits.MIN_NORMAL:
        return FAST
    return MASKED


# ---------------------------------------------------------- register tiles
# dst is flat float32: the tile's output C[0, 0] at base, rows rs apart.
# p (MR, NR): carry plane; g (2, R, W): packed dY; s (R, W): packed slope bases.

@register_jitable
def load_tile(acc, dst, base, rs, first):
    """acc = the MR x NR block at dst, or zeros for the first chunk."""
    for r in range(MR):
        row = dst[base + r * rs:base + r * rs + NR]
        for c in range(NR):
            acc[r, c] = 0.0 if first else row[c]


@register_jitable
def load_carry(p, carry, offset):
    for r in range(MR):
        for c in range(NR):
            p[r, c] = np.int32(carry[r, c] + offset)


@register_jitable
def store_tile(acc, dst, base, rs):
    for r in range(MR):
        row = dst[base + r * rs:base + r * rs + NR]
        for c in range(NR):
            row[c] = acc[r, c]


@register_jitable
def tile_a_fast(dst, base, rs, first, carry, dy, i0, s, q0, q1):
    """da tile: dY[i0 + r, q] broadcast along row r (a missing row repeats the last),
    slope bases B^T vectorised. All terms normal.

    The carry plane holds mant(A) - ONE here: ((S + P - ONE) & ~MANT) = s - ONE
    (ONE's mantissa field is zero), so g needs no adjusting."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    p = carray(stack_tile(MR, NR, np.int32), (MR, NR))
    load_tile(acc, dst, base, rs, first)
    load_carry(p, carry, -bits.ONE)
    last = dy.shape[0] - 1
    for q in range(q0, q1):
        sq = s[q]
        for r in range(MR):
            gr = dy[min(i0 + r, last), q]
            for c in range(NR):
                s_bits = np.int32(np.int32(sq[c] + p[r, c]) & NOT_MANT)
                acc[r, c] += _as_float(np.int32(s_bits + gr))
    store_tile(acc, dst, base, rs)


@register_jitable
def tile_a_masked(dst, base, rs, first, carry, dy, i0, s, q0, q1):
    """da tile, terms may vanish: skipped unless the slope's exponent beats the threshold.

    With P = mant(A) - ONE (see tile_a_fast), u = S + P has the exponent field
    E_s - 127 mod 256; flipping its top bit gives E_s + 1: the key |s| + MIN_NORMAL."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    p = carray(stack_tile(MR, NR, np.int32), (MR, NR))
    load_tile(acc, dst, base, rs, first)
    load_carry(p, carry, -bits.ONE)
    last = dy.shape[0] - 1
    for q in range(q0, q1):
        sq = s[q]
        for r in range(MR):
            gr = dy[min(i0 + r, last), q]
            tr = threshold(gr, bits.MIN_NORMAL)
            for c in range(NR):
                u = np.int32(sq[c] + p[r, c])
                old = acc[r, c]
                new = old + _as_float(np.int32(np.int32(u & NOT_MANT) + gr))
                acc[r, c] = new if np.int32(np.int32(u & EXP) ^ TOP_EXP) > tr else old
    store_tile(acc, dst, base, rs)


@register_jitable
def tile_b_fast(dst, base, rs, first, carry, g, s, q0, q1):
    """db tile: slope bases A broadcast along the row, dY vectorised. All terms normal."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    p = carray(stack_tile(MR, NR, np.int32), (MR, NR))
    load_tile(acc, dst, base, rs, first)
    load_carry(p, carry, 0)
    for q in range(q0, q1):
        sq = s[q]
        gq = g[0, q]
        for r in range(MR):
            sr = sq[r]
            for c in range(NR):
                s_bits = np.int32(np.int32(sr + p[r, c]) & NOT_MANT)
                acc[r, c] += _as_float(np.int32(s_bits + gq[c]))
    store_tile(acc, dst, base, rs)


@register_jitable
def tile_b_masked(dst, base, rs, first, carry, g, s, q0, q1):
    """db tile, terms may vanish (see tile_a_masked)."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    p = carray(stack_tile(MR, NR, np.int32), (MR, NR))
    load_tile(acc, dst, base, rs, first)
    load_carry(p, carry, 0)
    for q in range(q0, q1):
        sq = s[q]
        gq = g[0, q]
        tq = g[1, q]
        for r in range(MR):
            sr = sq[r]
            for c in range(NR):
                u = np.int32(sr + p[r, c])
                old = acc[r, c]
                new = old + _as_float(np.int32(np.int32(u & NOT_MANT) + gq[c]))
                acc[r, c] = new if np.int32(u & EXP) > tq[c] else old
    store_tile(acc, dst, base, rs)


@register_jitable
def tile_exact(dst, base, rs, first, x, r0, c0, dy, s, q0, q1, g_rows):
    """Any operands: the scalar bits.pam(g, bits.pam_slope(x, s)), x the raw carry operand.

    dy: the raw dY bits, (M, N); g_rows (da): dY[r0 + r, q], else (db) dY[q, c0 + c]."""
    acc = carray(stack_tile(MR, NR, np.float32), (MR, NR))
    load_tile(acc, dst, base, rs, first)
    nr = min(MR, x.shape[0] - r0)
    nc = min(NR, x.shape[1] - c0)
    for q in range(q0, q1):
        for r in range(nr):
            for c in range(nc):
                if g_rows:
                    gv = dy[r0 + r, q]
                    sv = s[q, c]
                else:
                    gv = dy[q, c0 + c]
                    sv = s[q, r]
                slope = bits.pam_slope(x[r0 + r, c0 + c], sv)
                acc[r, c] += _as_float(np.int32(bits.pam(gv, slope)))
    store_tile(acc, dst, base, rs)


# ------------------------------------------------------------ task bodies

@register_jitable
def grad_a_block(out, a, dy, g_bound, sp, s_bound, ip0, ip1, kp, n):
    """Row micro-panels ip0..ip1-1 times column panel kp of da = out (flat M x K).

    a (M, K) and dy (M, N) raw bits; sp (n_kp, N, NR) packed B^T."""
    m, k_total = a.shape
    p = np.empty((MR, NR), np.int32)
    scratch = np.empty(MR * NR, np.float32)
    c0 = kp * NR
    for ch in range(g_bound.shape[1]):
        q0 = ch * KC
        q1 = min(q0 + KC, n)
        first = ch == 0
        for ip in range(ip0, ip1):
            r0 = ip * MR
            at = r0 * k_total + c0
            ni, nj = min(MR, m - r0), min(NR, k_total - c0)
            dst, base, rs = open_tile(out, at, k_total, 1, ni, nj, scratch, MR, NR, first)
            nan = carry_tile(a, r0, c0, p)
            kind = EXACT if nan else tile_kind(g_bound[ip, ch], s_bound[kp, ch])
            if kind == FAST:
                tile_a_fast(dst, base, rs, first, p, dy, r0, sp[kp], q0, q1)
            elif kind == MASKED:
                tile_a_masked(dst, base, rs, first, p, dy, r0, sp[kp], q0, q1)
            else:
                tile_exact(dst, base, rs, first, a, r0, c0, dy, sp[kp], q0, q1, True)
            close_tile(out, at, k_total, 1, ni, nj, scratch, MR, NR)


@register_jitable
def grad_b_block(out, b, dy, gp, g_bound, sp, s_bound, kb0, kb1, jp, m):
    """Row micro-panels kb0..kb1-1 times column panel jp of db = out (flat K x N).

    b (K, N) and dy (M, N) raw bits; gp (n_jp, 2, M, NR) packed dY; sp (n_kb, M, MR) packed A."""
    k_total, n = b.shape
    p = np.empty((MR, NR), np.int32)
    scratch = np.empty(MR * NR, np.float32)
    c0 = jp * NR
    for ch in range(g_bound.shape[1]):
        q0 = ch * KC
        q1 = min(q0 + KC, m)
        first = ch == 0
        for kb in range(kb0, kb1):
            r0 = kb * MR
            at = r0 * n + c0
            ni, nj = min(MR, k_total - r0), min(NR, n - c0)
            dst, base, rs = open_tile(out, at, n, 1, ni, nj, scratch, MR, NR, first)
            nan = carry_tile(b, r0, c0, p)
            kind = EXACT if nan else tile_kind(g_bound[jp, ch], s_bound[kb, ch])
            if kind == FAST:
                tile_b_fast(dst, base, rs, first, p, gp[jp], sp[kb], q0, q1)
            elif kind == MASKED:
                tile_b_masked(dst, base, rs, first, p, gp[jp], sp[kb], q0, q1)
            else:
                tile_exact(dst, base, rs, first, b, r0, c0, dy, sp[kb], q0, q1, False)
            close_tile(out, at, n, 1, ni, nj, scratch, MR, NR)


@cpu_kernel(parallel=True)
def exact_grad_a(a, b, dy, a_index, b_index, g_bound, sp, s_bound, mc, da):
    """da[z, i, k] = sum_j pam(dy[z, i, j], pam_slope(A[i, k], B[k, j])), j increasing.

    a (nbA, M, K), b (nbB, K, N), dy (nb, M, N) bits. Records dY's bounds per
    row micro-panel in g_bound (nb, n_ip, n_jc, 2), packs B^T's column panels
    into sp (nbB, n_kp, N, NR) (bounds per KC chunk of j), then runs tasks
    (z, row block of mc micro-panels, column panel); the tiles read dY in place."""
    nb, m, k_total = da.shape
    n = dy.shape[2]
    n_ip = g_bound.shape[1]
    n_kp = sp.shape[1]
    n_g = nb * n_ip
    for t in prange(n_g + b.shape[0] * n_kp):
        if t < n_g:
            z = t // n_ip
            ip = t - z * n_ip
            row_bounds(dy[z], ip * MR, g_bound[z, ip])
        else:
            z = (t - n_g) // n_kp
            kp = t - n_g - z * n_kp
            pack_slopes_t(b[z], kp * NR, sp[z, kp], s_bound[z, kp])
    n_ib = (n_ip + mc - 1) // mc
    for t in prange(nb * n_ib * n_kp):
        z = t // (n_ib * n_kp)
        ib = (t // n_kp) % n_ib
        kp = t % n_kp
        grad_a_block(da[z].reshape(-1), a[a_index[z]], dy[z], g_bound[z], sp[b_index[z]],
                     s_bound[b_index[z]], ib * mc, min(ib * mc + mc, n_ip), kp, n)


@cpu_kernel(parallel=True)
def exact_grad_b(a, b, dy, a_index, b_index, gp, g_bound, sp, s_bound, mc, db):
    """db[z, k, j] = sum_i pam(dy[z, i, j], pam_slope(B[k, j], A[i, k])), i increasing.

    a (nbA, M, K), b (nbB, K, N), dy (nb, M, N) bits. Packs dY's column panels
    into gp (nb, n_jp, 2, M, NR) and A's column micro-panels into sp (nbA, n_kb, M, MR)
    (bounds per KC chunk of i), then runs tasks (z, row block of mc micro-panels,
    column panel). A is packed, flushed, because flushing its subnormals in the
    masked loop (read in place, as da reads dY) costs more than the packing."""
    nb, k_total, n = db.shape
    m = dy.shape[1]
    n_jp = gp.shape[1]
    n_kb = sp.shape[1]
    n_g = nb * n_jp
    for t in prange(n_g + a.shape[0] * n_kb):
        if t < n_g:
            z = t // n_jp
            jp = t - z * n_jp
            pack_grads(dy[z], jp * NR, gp[z, jp], g_bound[z, jp])
        else:
            z = (t - n_g) // n_kb
            kb = t - n_g - z * n_kb
            pack_slopes(a[z], kb * MR, sp[z, kb], s_bound[z, kb])
    n_ib = (n_kb + mc - 1) // mc
    for t in prange(nb * n_ib * n_jp):
        z = t // (n_ib * n_jp)
        ib = (t // n_jp) % n_ib
        jp = t % n_jp
        grad_b_block(db[z].reshape(-1), b[b_index[z]], dy[z], gp[z], g_bound[z], sp[a_index[z]],
                     s_bound[a_index[z]], ib * mc, min(ib * mc + mc, n_kb), jp, m)


def _panels(size, width):
    return (size + width - 1) // width


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
    nb = a_index.size
    if m and k and n:
        a3, b3 = np.ascontiguousarray(a3), np.ascontiguousarray(b3)
        dy3 = np.ascontiguousarray(dy.reshape((nb, m, n))).view(np.int32)
        da = np.empty((nb, m, k), np.float32)
        db = np.empty((nb, k, n), np.float32)
        # packed operands and bounds live in per-thread buffers reused between calls
        n_ip, n_kp, n_j = _panels(m, MR), _panels(k, NR), _panels(n, KC)
        exact_grad_a(a3, b3, dy3, a_index, b_index, _buffer("grad_a_g_bound", (nb, n_ip, n_j, 2)),
                     _buffer("grad_a_s", (b3.shape[0], n_kp, n, NR)),
                     _buffer("grad_a_s_bound", (b3.shape[0], n_kp, n_j, 2)),
                     _row_block(n_ip, nb * n_kp, MC), da)
        n_jp, n_kb, n_i = _panels(n, NR), _panels(k, MR), _panels(m, KC)
        exact_grad_b(a3, b3, dy3, a_index, b_index, _buffer("grad_b_g", (nb, n_jp, 2, m, NR)),
                     _buffer("grad_b_g_bound", (nb, n_jp, n_i, 2)),
                     _buffer("grad_b_s", (a3.shape[0], n_kb, m, MR)),
                     _buffer("grad_b_s_bound", (a3.shape[0], n_kb, n_i, 2)),
                     _row_block(n_kb, nb * n_jp, MC), db)
    else:                                  # an empty sum is +0.0
        da = np.zeros((nb, m, k), np.float32)
        db = np.zeros((nb, k, n), np.float32)
    da = da.reshape(batch + (m, k))
    db = db.reshape(batch + (k, n))
    if np.ndim(a) == 1:
        da = da[..., 0, :]
    if np.ndim(b) == 1:
        db = db[..., 0]
    return da, db
