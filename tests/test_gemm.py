"""PAM GEMM: bit-exact against a slow reference built from the elementwise primitives.

The reference sums ``pafree.ops.pam`` products (the elementwise kernel, itself
tested against bits.py) one k at a time in float32 numpy adds, which is the
definition: C[i, j] = sum_k pam(A[i, k], B[k, j]) in increasing k from +0.0.
"""
import numba
import numpy as np
import pytest

from pafree.ops import bits, pam, pam_matmul, pam_matmul_exact_grads
from pafree.ops.gemm import host
from pafree.ops.jit import KERNELS

F32 = np.float32


def f32(bit_pattern):
    return np.array(bit_pattern, np.int64).astype(np.uint32).view(F32)


def reference(a, b):
    """2-D C = A ⊙@ B, one k at a time (numpy float32 adds round like the scalar loop)."""
    acc = np.zeros((a.shape[0], b.shape[1]), F32)
    with np.errstate(over="ignore", invalid="ignore"):     # inf + inf, inf - inf: as in C
        for k in range(a.shape[1]):
            acc = acc + pam(a[:, k:k + 1], b[k:k + 1, :])
    return acc


def assert_same_bits(x, y):
    """Bit-identical, except that any NaN equals any NaN."""
    x, y = np.asarray(x, F32), np.asarray(y, F32)
    assert x.shape == y.shape
    assert x.flags.c_contiguous or x.ndim == 0
    assert np.array_equal(np.isnan(x), np.isnan(y))
    xb = np.where(np.isnan(x), 0, x).view(np.int32)
    yb = np.where(np.isnan(y), 0, y).view(np.int32)
    mismatch = np.argwhere(xb != yb)
    assert mismatch.size == 0, f"{len(mismatch)} elements differ, first at {mismatch[0]}"


# values that sit on every boundary of SPEC section 3
TWO = 2.0
EDGE = F32([
    0.0, -0.0, f32(1), f32(0x80000001), f32(0x007FFFFF),       # zeros, subnormals
    f32(bits.MIN_NORMAL), -f32(bits.MIN_NORMAL),                  # 2**-126
    TWO ** -63, TWO ** -64, 1.5 * TWO ** -63, 1.25 * TWO ** -64,  # products near 2**-126
    TWO ** 63, TWO ** 64, 1.5 * TWO ** 63, -1.75 * TWO ** 64,     # products near 2**128
    f32(0x7F7FFFFF), 1.0, -1.0, 0.5, 1.5, -3.25, 1e-20, -7e19,
])
SPECIAL = F32([np.inf, -np.inf, np.nan])


def data(shape, kind, rng):
    """fast: all products normal; masked: zeros, subnormals and underflow; edge: everything."""
    if kind == "fast":
        return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(F32)
    x = rng.standard_normal(shape).astype(F32)
    if kind == "masked":
        x[rng.random(shape) < 0.4] = 0.0
        x[rng.random(shape) < 0.1] = f32(0x00012345)                  # subnormal
        x[rng.random(shape) < 0.2] *= F32(TWO ** -70)                 # products may underflow
        return x
    assert kind == "edge"
    pick = rng.random(shape) < 0.05
    x[pick] = rng.choice(EDGE, shape)[pick]
    x.flat[rng.choice(x.size, 3)] = rng.choice(SPECIAL, 3)     # a few: NaN spreads fast
    return x


@pytest.mark.parametrize("m,k,n", [
    (300, 777, 129),    # no dimension a multiple of any tile; 4 K chunks, the last partial
    (1, 1, 1), (5, 3, 2), (4, 256, 64), (65, 257, 63), (9, 40, 200), (130, 5, 7),
])
@pytest.mark.parametrize("kind", ["fast", "masked", "edge"])
def test_matches_reference(m, k, n, kind):
    rng = np.random.default_rng(m * 1000 + k + n)
    a, b = data((m, k), kind, rng), data((k, n), kind, rng)
    assert_same_bits(pam_matmul(a, b), reference(a, b))


def test_blocks_choose_their_own_path():
    """One inf, one overflow, a zero row: only their tiles leave the fast path; all exact."""
    rng = np.random.default_rng(7)
    a, b = data((200, 600), "fast", rng), data((600, 150), "fast", rng)
    a[3, 500] = np.inf
    a[150, 10] = TWO ** 100
    b[20, 140] = TWO ** 40
    a[77] = 0.0
    b[300, 70] = np.nan
    assert_same_bits(pam_matmul(a, b), reference(a, b))


def test_reference_is_the_scalar_loop():
    """The reference itself against Python-int bits.pam and a float32 running sum."""
    rng = np.random.default_rng(3)
    a, b = data((3, 50), "edge", rng), data((50, 4), "edge", rng)
    ab, bb = a.view(np.int32), b.view(np.int32)
    expect = np.zeros((3, 4), F32)
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(3):
            for j in range(4):
                s = F32(0.0)
                for k in range(50):
                    s = F32(s + f32(int(bits.pam(int(ab[i, k]), int(bb[k, j])))))
                expect[i, j] = s
    assert_same_bits(reference(a, b), expect)
    assert_same_bits(pam_matmul(a, b), expect)


def test_empty_and_zero_k():
    assert_same_bits(pam_matmul(np.ones((3, 0), F32), np.ones((0, 4), F32)), np.zeros((3, 4), F32))
    assert pam_matmul(np.ones((0, 5), F32), np.ones((5, 4), F32)).shape == (0, 4)
    assert pam_matmul(np.ones((2, 0, 5), F32), np.ones((5, 4), F32)).shape == (2, 0, 4)


def test_powers_of_two_equal_float_matmul():
    """PAM is exact on powers of two; with sums that stay exact, numpy's order cannot matter."""
    rng = np.random.default_rng(11)
    a = (rng.choice([-1, 1], (70, 90)) * TWO ** rng.integers(-3, 4, (70, 90))).astype(F32)
    b = (rng.choice([-1, 1], (90, 80)) * TWO ** rng.integers(-3, 4, (90, 80))).astype(F32)
    a[rng.random(a.shape) < 0.2] = 0.0
    assert_same_bits(pam_matmul(a, b), a @ b)


@pytest.mark.parametrize("shape_a,shape_b", [
    ((2, 1, 5, 7), (3, 7, 4)),
    ((3, 4, 7), (7, 6)),
    ((6, 7), (2, 3, 7, 70)),
    ((7,), (2, 7, 4)),
    ((2, 5, 7), (7,)),
    ((7,), (7, 4)),
    ((5, 7), (7,)),
    ((7,), (7,)),
    ((3, 3, 5, 33), (3, 1, 33, 70)),      # >= 8 small products: packed inside their tasks
    ((12, 9, 300), (300, 5)),
    ((70, 12, 16), (70, 16, 11)),         # attention heads: many tiny products
    ((2, 20, 1, 9), (20, 9, 32)),         # broadcast A
    ((33, 5, 3), (1, 3, 7)),              # broadcast B
])
@pytest.mark.parametrize("kind", ["fast", "masked", "edge"])
def test_batched_broadcasting_matches_loop(shape_a, shape_b, kind):
    rng = np.random.default_rng(len(shape_a) * 10 + len(shape_b))
    a, b = data(shape_a, kind, rng), data(shape_b, kind, rng)
    got = pam_matmul(a, b)
    expect_shape = np.matmul(np.ones_like(a), np.ones_like(b)).shape
    a2 = a if a.ndim > 1 else a[None, :]
    b2 = b if b.ndim > 1 else b[:, None]
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a2 = np.broadcast_to(a2, batch + a2.shape[-2:])
    b2 = np.broadcast_to(b2, batch + b2.shape[-2:])
    expect = np.empty(batch + (a2.shape[-2], b2.shape[-1]), F32)
    for idx in np.ndindex(*batch):
        expect[idx] = reference(a2[idx], b2[idx])
    assert_same_bits(got, expect.reshape(expect_shape))


@pytest.mark.parametrize("transpose_a,transpose_b", [(True, False), (False, True), (True, True)])
def test_transposed_forms(transpose_a, transpose_b):
    rng = np.random.default_rng(5)
    a = data((2, 37, 70), "edge", rng)     # (batch, M, K) before the transpose flag
    b = data((70, 90), "edge", rng)        # (K, N)
    a_in = np.ascontiguousarray(a.swapaxes(-1, -2)) if transpose_a else a
    b_in = np.ascontiguousarray(b.T) if transpose_b else b
    got = pam_matmul(a_in, b_in, transpose_a=transpose_a, transpose_b=transpose_b)
    assert_same_bits(got, np.stack([reference(a[z], b) for z in range(2)]))


def test_strided_inputs_and_transposed_views():
    rng = np.random.default_rng(6)
    a = data((40, 300), "masked", rng)[::2, ::3]
    b = data((100, 70), "masked", rng)
    assert_same_bits(pam_matmul(a, b), reference(np.ascontiguousarray(a), b))
    assert_same_bits(pam_matmul(b.T, a.T), reference(np.ascontiguousarray(b.T),
                                                     np.ascontiguousarray(a.T)))


def test_errors():
    with pytest.raises(ValueError):
        pam_matmul(np.ones((2, 3), F32), np.ones((4, 2), F32))
    with pytest.raises(ValueError):
        pam_matmul(F32(2.0), np.ones(3, F32))
    with pytest.raises(ValueError):
        pam_matmul(np.ones(3, F32), np.ones((3, 2), F32), transpose_a=True)
    with pytest.raises(TypeError):
        pam_matmul(np.ones((2, 2), complex), np.ones((2, 2), F32))


def test_thread_count_does_not_change_bits():
    rng = np.random.default_rng(8)
    a, b = data((260, 530), "edge", rng), data((530, 200), "masked", rng)
    dy = data((260, 200), "fast", rng)
    before = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            runs.append([pam_matmul(a, b), pam_matmul(a[:180, :64].reshape(9, 20, 64), b[:64]),
                         pam_matmul(a[:64], b[:, :70]),       # few row blocks: split per thread count
                         *pam_matmul_exact_grads(a[:60, :70], b[:70, :50], dy[:60, :50])])
        one, many = runs
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, many):
        assert_same_bits(x, y)


def test_workspace_is_reused():
    rng = np.random.default_rng(9)
    a, b = data((64, 300), "fast", rng), data((300, 128), "fast", rng)
    pam_matmul(a, b)
    buffers = [getattr(host._workspace, name) for name in ("a", "b")]
    pam_matmul(a[:50, :200], b[:200, :100])
    assert [getattr(host._workspace, name) for name in ("a", "b")] == buffers


def test_kernel_audit_finds_no_float_multiply():
    """pafree.audit's scan of every compiled GEMM signature (IR and asm): float adds only."""
    from pafree.audit.kernels import scan_dispatcher
    rng = np.random.default_rng(15)
    a, b, dy = data((9, 300), "edge", rng), data((300, 70), "edge", rng), data((9, 70), "fast", rng)
    pam_matmul(a, b)                                          # all three tile loops
    many = 4 * numba.config.NUMBA_NUM_THREADS
    pam_matmul(np.stack([a[:, :30]] * many), np.stack([b[:30]] * many))   # many small products
    pam_matmul_exact_grads(a[:, :20], b[:20], dy)
    for name in ("pack_operands", "pam_gemm_packed", "pam_gemm_batched", "exact_grad_a",
                 "exact_grad_b"):
        counts, forbidden = scan_dispatcher(KERNELS[name])
        assert forbidden == [], f"{name}: {forbidden[:3]}"
        if name != "pack_operands":                                    # packing only moves bits
            assert counts.get("asm float add", 0) > 0, name   # the scan sees the sums


@pytest.mark.parametrize("shape_a,shape_b", [
    ((7,), (7,)), ((7,), (7, 4)), ((5, 7), (7,)), ((5, 7), (7, 4)), ((7,), (2, 3, 7, 4)),
    ((2, 1, 5, 7), (3, 7, 4)), ((1, 5, 7), (6, 1, 7, 4)), ((0, 5, 7), (7, 4)), ((5, 0), (0, 4)),
    ((5, 7), (6, 4)), ((2, 5, 7), (3, 7, 4)), ((7,), (6,)), ((), (7,)), ((5, 7), ()),
])
def test_shape_rules_are_numpys(shape_a, shape_b):
    """gemm.shapes.matmul_shapes: np.matmul's output shape, or a ValueError where it raises."""
    from pafree.ops.gemm.shapes import matmul_shapes
    from pafree.ops.indices import size
    try:
        expect = np.matmul(np.ones(shape_a, F32), np.ones(shape_b, F32)).shape
    except ValueError:
        with pytest.raises(ValueError):
            matmul_shapes(shape_a, shape_b, "test")
        return
    got = matmul_shapes(shape_a, shape_b, "test")
    assert got.out_shape == expect
    assert size(got.batch) * got.m * got.n == size(expect)
    transposed = matmul_shapes(shape_a[:-2] + shape_a[:-3:-1] if len(shape_a) > 1 else shape_a,
                               shape_b, "test", transpose_a=len(shape_a) > 1)
    assert transposed == got
