"""Exact-derivative PAM GEMMs: bit-exact against sums of elementwise PAM slopes."""
import numpy as np
import pytest

from pafree.ops import pam, pam_matmul, pam_matmul_exact_grads, pam_slope
from test_gemm import F32, TWO, assert_same_bits, data


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


@pytest.mark.parametrize("kind", ["fast", "masked", "edge"])
def test_exact_grads_match_reference(kind):
    rng = np.random.default_rng(12)
    a, b, dy = data((23, 31), kind, rng), data((31, 17), kind, rng), data((23, 17), kind, rng)
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
    da1, db1 = pam_matmul_exact_grads(a[0, 0, 1], b[0], dy[0, 0, 1])     # 1-D @ 2-D
    assert da1.shape == (6,) and db1.shape == (6, 5)
    assert_same_bits(da1, da[0, 0, 1])
