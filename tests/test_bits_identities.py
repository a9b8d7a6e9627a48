"""The identities the PAM GEMMs rely on (pafree/ops/bits.py, "GEMM identities"), each
against the scalar definitions bits.pam / bits.pam_slope on plain Python ints.

The identity side is computed as the GEMM kernels compute it: compiled, in int32
lanes that wrap (``kernel_*`` below), so a wrap the kernels depend on is tested too.
"""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numba import njit

from pafree.ops import bits

INT32 = st.integers(-2**31, 2**31 - 1)


def from_fields(sign, exp, mant):
    return int(np.array((sign << 31) | (exp << 23) | mant, np.int64).astype(np.uint32)
               .view(np.int32))


# every pattern; finite normals of any exponent; zeros, subnormals, inf, NaN
fields = st.builds(from_fields, st.integers(0, 1), st.integers(0, 255),
                   st.integers(0, bits.MANT))
specials = st.sampled_from([0, bits.SIGN, 1, bits.SIGN | bits.MANT, bits.MIN_NORMAL,
                            bits.SIGN | bits.MIN_NORMAL, bits.ONE, bits.ONE | bits.MANT,
                            bits.INF - 1, bits.INF, bits.SIGN | bits.INF, bits.QNAN,
                            bits.INF + 1])
any_bits = st.one_of(INT32, fields, specials)


def is_nan(x):
    return (x & bits.MAG) > bits.INF


def is_finite(x):
    return (x & bits.MAG) < bits.INF


@st.composite
def near_threshold(draw):
    """(a, b) whose magnitudes sum to within a few ulps of ONE + MIN_NORMAL (where A ⊙ B
    starts to flush) or of ONE + INF (where it overflows), random signs."""
    target = draw(st.sampled_from([bits.ONE + bits.MIN_NORMAL, bits.ONE + bits.INF]))
    mag_a = draw(st.integers(bits.MIN_NORMAL, bits.INF - 1))
    mag_b = target - mag_a + draw(st.integers(-3, 3))
    mag_b = min(max(mag_b, 0), bits.INF - 1)
    sign_a, sign_b = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    return from_fields(sign_a, 0, 0) | mag_a, from_fields(sign_b, 0, 0) | mag_b


pairs = st.one_of(st.tuples(any_bits, any_bits), near_threshold())


# ---- the identities as the kernels evaluate them ------------------------------------

@njit
def kernel_nonzero_test(a, b, offset):
    return np.int32(bits.flushed_magnitude(b) + offset) > bits.pam_threshold(a, offset)


@njit
def kernel_pam_biased(a, b):
    return bits.pam_biased(a, bits.pam_bias(b))


@njit
def kernel_slope(a, b):
    u = np.int32(bits.slope_base(b) + bits.slope_carry(a))
    return bits.slope_bits(u), bits.slope_magnitude(u)


@njit
def kernel_biased_slope(a, b):
    u = np.int32(bits.slope_base(b) + np.int32(bits.slope_carry(a) - bits.ONE))
    return bits.slope_bits(u), bits.slope_magnitude_biased(u)


@njit
def kernel_bounds(a_lo, a_hi, b_lo, b_hi):
    return bits.pam_surely_normal(a_lo, b_lo), bits.pam_surely_finite(a_hi, b_hi)


@njit
def kernel_slope_bounds(lo, hi):
    return bits.slope_bounds(lo, hi)


# ---- tests ---------------------------------------------------------------------------

@given(pairs)
def test_threshold_decides_whether_the_product_is_nonzero(pair):
    a, b = pair
    if not (is_finite(a) and is_finite(b)):
        return                                    # inf/NaN tiles take the exact loop
    nonzero = (int(bits.pam(a, b)) & bits.MAG) != 0
    for offset in (0, bits.MIN_NORMAL):           # da adds MIN_NORMAL to key and threshold
        assert kernel_nonzero_test(np.int32(a), np.int32(b), offset) == nonzero


@given(pairs)
def test_pam_biased_is_pam_where_the_product_is_normal(pair):
    a, b = pair
    product = int(bits.pam(a, b))
    normal = bits.MIN_NORMAL <= (product & bits.MAG) < bits.INF
    if normal and not (is_nan(a) or is_nan(b)):
        assert kernel_pam_biased(np.int32(a), np.int32(b)) == product


@given(pairs)
def test_slope_bits_is_pam_slope(pair):
    a, b = pair
    if is_nan(a) or is_nan(b):
        return                                    # a NaN carry operand: the exact loop
    slope = int(bits.pam_slope(a, b))
    got, magnitude = kernel_slope(np.int32(a), np.int32(b))
    assert got == slope
    assert magnitude == slope & bits.MAG


@given(pairs)
def test_a_biased_carry_gives_the_biased_slope(pair):
    a, b = pair
    if is_nan(a) or is_nan(b):
        return
    slope = int(bits.pam_slope(a, b))
    got, key = kernel_biased_slope(np.int32(a), np.int32(b))
    assert got == int(np.int64(slope - bits.ONE).astype(np.int32))     # wraps like int32
    if (slope & bits.MAG) < bits.INF:
        assert key == (slope & bits.MAG) + bits.MIN_NORMAL


magnitudes = st.one_of(st.integers(0, bits.MAG), st.integers(bits.ONE - (60 << 23),
                                                             bits.ONE + (60 << 23)))


@st.composite
def magnitude_bounds(draw):
    """(a_lo, a, a_hi, b_lo, b, b_hi) magnitudes, lo <= x <= hi, often with a corner sum
    a_lo + b_lo or a_hi + b_hi within a few ulps of where A ⊙ B flushes or overflows."""
    a_lo, a, a_hi = sorted(draw(st.lists(magnitudes, min_size=3, max_size=3)))
    b_lo, b, b_hi = sorted(draw(st.lists(magnitudes, min_size=3, max_size=3)))
    corner = draw(st.sampled_from(["none", "low", "high"]))
    if corner == "low":
        b_lo = min(max(bits.ONE + bits.MIN_NORMAL - a_lo + draw(st.integers(-2, 2)), 0), b)
    elif corner == "high":
        b_hi = max(min(bits.ONE + bits.INF - a_hi + draw(st.integers(-2, 2)), bits.MAG), b)
    return a_lo, a, a_hi, b_lo, b, b_hi


@given(magnitude_bounds(), st.integers(0, 1), st.integers(0, 1))
def test_magnitude_bounds_bound_every_product(bounds, sign_a, sign_b):
    """Any a, b inside the bounds: surely_finite => finite, surely_normal too => normal;
    and the bounds are tight: where they fail, the corner product does."""
    a_lo, a, a_hi, b_lo, b, b_hi = bounds
    surely_normal, surely_finite = kernel_bounds(a_lo, a_hi, b_lo, b_hi)
    inside = [(a_lo, b_lo), (a, b), (a_hi, b_hi)]
    products = [int(bits.pam(from_fields(sign_a, 0, 0) | x, from_fields(sign_b, 0, 0) | y))
                & bits.MAG for x, y in inside]
    assert surely_finite == (products[2] < bits.INF)          # the largest corner decides
    if surely_finite:
        assert all(p < bits.INF for p in products)
        assert surely_normal == (products[0] >= bits.MIN_NORMAL)   # and the smallest
        if surely_normal:
            assert all(p >= bits.MIN_NORMAL for p in products)


@given(any_bits, st.lists(st.integers(0, bits.INF), min_size=3, max_size=3))
def test_slope_bounds_bound_every_slope(a, base_mags):
    """|pam_slope(a, b)| lies in slope_bounds of the flushed magnitudes bounding |b|."""
    lo, mag_b, hi = sorted(base_mags)
    if is_nan(a):
        return
    slope_lo, slope_hi = kernel_slope_bounds(bits.flushed_magnitude(lo), bits.flushed_magnitude(hi))
    slope = int(bits.pam_slope(a, mag_b)) & bits.MAG
    assert slope_lo <= slope <= slope_hi
