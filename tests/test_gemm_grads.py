"""Exact-derivative PAM GEMMs: bit-exact against sums of elementwise PAM slopes.

The kernels (pafree/ops/gemm/grads.py) pick a fast, a masked or an exact loop
per block from magnitude bounds; the tests below put values on every boundary
of those choices (zeros, subnormals, underflow, overflow, inf, NaN, mantissa
carries) and compare with the definition built from the elementwise
``pam`` and ``pam_slope`` kernels.
"""
import numba
import numpy as np
import pytest

from pafree.ops import bits, pam, pam_matmul, pam_matmul_exact_grads, pam_slope, tuning
from pafree.ops.gemm import forward, grads, tiles
from test_gemm import EDGE, F32, SPECIAL, TWO, assert_same_bits, data, f32, reference


def reference_grads(a, b, dy):
    """2-D exact derivatives of SPEC section 4, summed in increasing j (da) and i (db)."""
    da = np.zeros(a.shape, F32)
    db = np.zeros(b.shape, F32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(b.shape[1]):
            da = da + pam(dy[:, j:j + 1], pam_slope(a, b[:, j][None, :]))
        for i in range(a.shape[0]):
            db = db + pam(dy[i][None, :], pam_slope(b, a[i][:, None]))
    return da, db


@pytest.mark.parametrize("m,k,n", [
    (23, 31, 17), (1, 1, 1), (16, 64, 8), (65, 33, 31),   # tiles are 8 x 32: whole ones, edges
    (9, 70, 600), (530, 40, 7),                           # more than one 512-long chunk
])
@pytest.mark.parametrize("kind", ["fast", "masked", "edge"])
def test_exact_grads_match_reference(m, k, n, kind):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b, dy = data((m, k), kind, rng), data((k, n), kind, rng), data((m, n), kind, rng)
    da, db = pam_matmul_exact_grads(a, b, dy)
    expect_da, expect_db = reference_grads(a, b, dy)
    assert_same_bits(da, expect_da)
    assert_same_bits(db, expect_db)


def single_terms(g_values, a_values, b_values):
    """Operands whose every gradient element is one term pam(g, pam_slope(a, b)), for all
    triples: da with N = 1 (row i = (g, a) pair, column k = b) and db with M = 1."""
    g, a = np.meshgrid(g_values, a_values, indexing="ij")
    g, a = g.reshape(-1), a.reshape(-1)
    a_mat = np.repeat(a[:, None], len(b_values), axis=1)       # (M, K): a of row i everywhere
    expect = F32(0.0) + pam(g[:, None], pam_slope(a_mat, b_values[None, :]))   # sums start at +0.0
    return a_mat, b_values[:, None], g[:, None], expect


CARRY_A = F32([1.0, 1.5, 1.75, 1.25, -1.5, 1.9999999, 0.0])    # mantissas that do / don't carry
LOWEST_PRODUCT_MIN_NORMAL = F32([TWO ** -63, 1.5 * TWO ** -63, 1.9999999 * TWO ** -63, -TWO ** -62,
                                 1.0, -3.0, 1.5 * TWO ** 62, 1.9999999 * TWO ** 63])
ALMOST_TWO = f32(0x3FFFFFFF)                                   # mantissa all ones: |g| + |s| can
NEAR_UNDERFLOW = F32([TWO ** -63, 1.5 * TWO ** -63, TWO ** -64, 1.25 * TWO ** -64,  # land 1 below
                      ALMOST_TWO * TWO ** -64, -ALMOST_TWO * TWO ** -63,             # the threshold
                      -1.5 * TWO ** -62, TWO ** -62, 0.75 * TWO ** -63, 1.0, -3.0])
FLUSHED = F32([0.0, -0.0, f32(1), f32(0x807FFFFF), f32(0x00400000)])
NEAR_OVERFLOW = F32([TWO ** 63, 1.5 * TWO ** 63, -TWO ** 64, 1.75 * TWO ** 64, 1.5 * TWO ** 62,
                     TWO ** 126, 1.5 * TWO ** 126, 1.5 * TWO ** 127, f32(0x7F7FFFFF), 1e-20])


def magnitude_bound(x, flush):
    """(min, max) |bits| as the kernels record them (flush: subnormal slope bases count as 0)."""
    mag = x.view(np.int32) & bits.MAG
    if flush:
        mag = np.where(mag < bits.MIN_NORMAL, 0, mag)
    return np.array([mag.min(), mag.max()], np.int32)


@pytest.mark.parametrize("values,loop", [
    (LOWEST_PRODUCT_MIN_NORMAL, tiles.FAST),      # every term normal, the lowest 2**-126
    (NEAR_UNDERFLOW, tiles.MASKED),               # all normal, some terms underflow
    (np.concatenate([NEAR_UNDERFLOW, FLUSHED]), tiles.MASKED),    # and zeros, subnormals
    (NEAR_OVERFLOW, tiles.EXACT),                 # slopes 2**127, 2**128 (inf), overflow
    (np.concatenate([EDGE, SPECIAL]), tiles.EXACT),
])
def test_every_single_term_on_the_boundaries(values, loop):
    """Each output one term: every (dY, A, B) triple matches pam(dY, pam_slope(A, B))."""
    bounds = magnitude_bound(values, False), magnitude_bound(values, True)     # dY, slope bases
    assert grads.derivative_path(*bounds) == loop
    a_values = np.concatenate([CARRY_A, values[:4]])
    with np.errstate(over="ignore", invalid="ignore"):
        a, b, dy, expect = single_terms(values, a_values, values)
        assert_same_bits(pam_matmul_exact_grads(a, b, dy)[0], expect)
        # db[k, j] = pam(dY[0, j], pam_slope(B[k, j], A[0, k])): the same triples, transposed
        db = pam_matmul_exact_grads(b.T, a.T, dy.T)[1]
        assert_same_bits(db, expect.T)


def test_blocks_choose_their_own_path():
    """One NaN, one inf, one slope overflow, zero rows: only their blocks leave the fast loop."""
    rng = np.random.default_rng(7)
    a, b = data((150, 70), "fast", rng), data((70, 600), "fast", rng)
    dy = data((150, 600), "fast", rng)
    a[3, 50] = np.nan
    dy[100, 550] = np.inf
    b[20, 140] = 1.5 * TWO ** 127          # slope 2**128 where A's mantissa carries: inf
    a[77] = 0.0
    dy[:, 300] = 0.0
    b[40, 10:20] = f32(0x00012345)
    da, db = pam_matmul_exact_grads(a, b, dy)
    expect_da, expect_db = reference_grads(a, b, dy)
    assert_same_bits(da, expect_da)
    assert_same_bits(db, expect_db)


def test_exact_grads_are_the_derivative_on_a_linear_piece():
    """Moving A[i, k] a little (no mantissa carry changes) moves Y[i, :] by exactly slope * step."""
    rng = np.random.default_rng(13)
    a = (rng.choice([1.0, 1.25], (6, 5))).astype(F32)       # mantissa sums stay below 1 ...
    b = (rng.choice([-1, 1], (5, 4)) * TWO ** rng.integers(-2, 3, (5, 4)) * 1.5).astype(F32)
    a[2, 3] = 1.125                                          # ... and 1.125 + step as well
    step = F32(TWO ** -10)
    moved = a.copy()
    moved[2, 3] += step
    dy = np.zeros((6, 4), F32)
    dy[2] = 1.0                                             # dL/dY: select row 2
    da, db = pam_matmul_exact_grads(a, b, dy)
    change = (pam_matmul(moved, b) - pam_matmul(a, b))[2].astype(np.float64).sum()
    assert change == da[2, 3] * float(step)                  # float64: exact here


def test_exact_grads_batched_shapes():
    rng = np.random.default_rng(14)
    a, b = data((3, 1, 4, 6), "masked", rng), data((2, 6, 5), "masked", rng)
    dy = data((3, 2, 4, 5), "fast", rng)
    da, db = pam_matmul_exact_grads(a, b, dy)
    assert da.shape == (3, 2, 4, 6) and db.shape == (3, 2, 6, 5)
    for z in np.ndindex(3, 2):
        expect_da, expect_db = reference_grads(a[z[0], 0], b[z[1]], dy[z])
        assert_same_bits(da[z], expect_da)
        assert_same_bits(db[z], expect_db)


def test_one_dimensional_operands():
    rng = np.random.default_rng(16)
    a, b = data((5, 40), "edge", rng), data((40, 37), "edge", rng)
    dy = data((5, 37), "masked", rng)
    da, db = pam_matmul_exact_grads(a, b, dy)
    da1, db1 = pam_matmul_exact_grads(a[1], b, dy[1])                  # 1-D @ 2-D
    assert da1.shape == (40,) and db1.shape == (40, 37)
    assert_same_bits(da1, da[1])
    assert_same_bits(db1, reference_grads(a[1:2], b, dy[1:2])[1])
    da2, db2 = pam_matmul_exact_grads(a, b[:, 3], dy[:, 3])            # 2-D @ 1-D
    assert da2.shape == (5, 40) and db2.shape == (40,)
    assert_same_bits(db2, db[:, 3])
    assert_same_bits(da2, reference_grads(a, b[:, 3:4], dy[:, 3:4])[0])
    da3, db3 = pam_matmul_exact_grads(a[1], b[:, 3], dy[1, 3])         # 1-D @ 1-D
    expect_da, expect_db = reference_grads(a[1:2], b[:, 3:4], dy[1:2, 3:4])
    assert_same_bits(da3, expect_da[0])
    assert_same_bits(db3, expect_db[:, 0])


def test_empty_sums_are_positive_zero():
    for m, k, n in [(3, 0, 4), (0, 5, 4), (3, 5, 0)]:
        da, db = pam_matmul_exact_grads(np.ones((m, k), F32), np.ones((k, n), F32),
                                        np.ones((m, n), F32))
        assert_same_bits(da, np.zeros((m, k), F32))
        assert_same_bits(db, np.zeros((k, n), F32))
    da, db = pam_matmul_exact_grads(np.ones((0, 3, 4), F32), np.ones((4, 5), F32),
                                    np.ones((0, 3, 5), F32))                 # empty batch
    assert da.shape == (0, 3, 4) and db.shape == (0, 4, 5)


def test_errors():
    with pytest.raises(ValueError):
        pam_matmul_exact_grads(np.ones((2, 3), F32), np.ones((3, 4), F32), np.ones((2, 5), F32))
    with pytest.raises(ValueError):
        pam_matmul_exact_grads(np.ones((2, 3), F32), np.ones((4, 2), F32), np.ones((2, 2), F32))


def test_thread_count_does_not_change_bits():
    rng = np.random.default_rng(17)
    a, b = data((2, 300, 90), "edge", rng), data((90, 200), "masked", rng)
    dy = data((2, 300, 200), "fast", rng)
    before = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            runs.append(pam_matmul_exact_grads(a, b, dy))
    finally:
        numba.set_num_threads(before)
    for x, y in zip(*runs):
        assert_same_bits(x, y)


@pytest.mark.parametrize("vector_bits", tuning.VECTOR_BITS)
def test_every_vector_width_gives_the_same_bits(vector_bits, monkeypatch):
    """Each compiled variant (tuning.py: the one this CPU runs and the others) on the same
    operands: bit for bit the scalar definitions, every tile loop, and no float multiply."""
    from pafree.audit.kernels import scan_dispatcher
    from pafree.ops.jit import KERNELS
    monkeypatch.setattr(forward, "THIS_CPU", forward.gemm_kernels(vector_bits))
    monkeypatch.setattr(grads, "THIS_CPU", grads.derivative_kernels(vector_bits))
    rng = np.random.default_rng(vector_bits)
    many = 4 * numba.config.NUMBA_NUM_THREADS
    for kind in ("fast", "masked", "edge"):
        a, b = data((70, 300), kind, rng), data((300, 130), kind, rng)
        assert_same_bits(pam_matmul(a, b), reference(a, b))
        small_a, small_b = data((many, 9, 30), kind, rng), data((many, 30, 70), kind, rng)
        expect = np.stack([reference(x, y) for x, y in zip(small_a, small_b)])
        assert_same_bits(pam_matmul(small_a, small_b), expect)           # pam_gemm_batched
        a, b, dy = data((23, 31), kind, rng), data((31, 70), kind, rng), data((23, 70), kind, rng)
        for got, expect in zip(pam_matmul_exact_grads(a, b, dy), reference_grads(a, b, dy)):
            assert_same_bits(got, expect)
    for name in ("pam_gemm_packed", "pam_gemm_batched", "exact_grad_a", "exact_grad_b"):
        counts, forbidden = scan_dispatcher(KERNELS[tuning.kernel_name(name, vector_bits)])
        assert forbidden == [] and counts.get("asm float add", 0) > 0, name


def test_kernels_load_from_the_disk_cache_in_a_new_process():
    """Numba keys a closure's disk-cache entry on its free variables, pickled: the factories'
    kernels must pickle the same in every process, or every process compiles them again."""
    import subprocess
    import sys
    code = ("import hashlib; from numba.core.serialize import dumps; from pafree.ops.jit import "
            "KERNELS; print([hashlib.sha256(dumps([c.cell_contents for c in "
            "KERNELS[n].py_func.__closure__])).hexdigest() for n in "
            "('pam_gemm_packed', 'pam_gemm_batched', 'exact_grad_a', 'exact_grad_b')])")
    keys = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert keys[0] == keys[1] and len(keys[0]) > 200
