"""pafree.ops against the independent reference (tests/reference.py), SPEC's laws,
error bounds and exact slopes, and bad input. Table-driven: one row per op."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import reference as ref
from pafree import ops
from pafree.ops import bits, tuning

# ---- inputs ---------------------------------------------------------------------------

MIN_NORMAL = float(np.finfo(np.float32).tiny)
MAX_NORMAL = float(np.finfo(np.float32).max)
SPECIAL = np.array([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38, MIN_NORMAL,
                    -MIN_NORMAL, MAX_NORMAL, -MAX_NORMAL, np.inf, -np.inf, np.nan, 1.0, -1.0,
                    1.5, -1.5, 2.0, 0.5, 0.25, 4.0, 3.0, 127.99999, 128.0, -126.0, -126.00001,
                    -127.0, 1e30, -1e-30], np.float32).view(np.int32)
SPECIAL = np.concatenate([SPECIAL, np.array([0x7F800001, 0x7FFFFFFF, 0xFFC00000, 0xFF800001],
                                            np.uint32).view(np.int32)])


def as_bits(x):
    return np.asarray(x, np.float32).view(np.int32)


def as_floats(int32_values):
    return np.asarray(int32_values, np.int32).view(np.float32)


any_bits = st.one_of(
    st.integers(-2**31, 2**31 - 1),                                    # every pattern
    st.floats(width=32).map(lambda f: int(as_bits(f))),                # NaN/inf/subnormal
    st.floats(-200.0, 200.0, width=32).map(lambda f: int(as_bits(f))),  # exp2's range
    st.sampled_from([int(v) for v in SPECIAL]))
bit_lists = st.lists(any_bits, min_size=1, max_size=20)


def normals(lo_exp=-126, hi_exp=127, positive=False):
    """Normal float32 values with exponent E in [lo_exp, hi_exp], as Python floats."""
    return st.builds(
        lambda s, e, m: float(as_floats((s << 31) - (s << 32) | (e + 127) << 23 | m)),
        st.just(0) if positive else st.integers(0, 1), st.integers(lo_exp, hi_exp),
        st.integers(0, (1 << 23) - 1))


# ---- bit-for-bit equality with the reference (kernels and the plain-Python bit logic) -----

UNARY = ["paexp2", "palog2", "pasqrt", "paexp", "palog",
         "paexp2_slope", "palog2_slope", "pasqrt_slope"]
BINARY = ["pam", "pad", "papow", "pam_slope", "pad_slope_a", "pad_slope_b"]
PUBLIC = {name: getattr(ops, name) for name in UNARY + ["pam", "pad", "papow", "pam_slope"]}
PUBLIC["pad_slope_a"] = lambda a, b: ops.pad_slope(a, b)[0]
PUBLIC["pad_slope_b"] = lambda a, b: ops.pad_slope(a, b)[1]


@pytest.mark.parametrize("name", UNARY)
@given(xs=bit_lists)
def test_unary_matches_reference(name, xs):
    expected = [getattr(ref, name)(x) for x in xs]
    assert as_bits(PUBLIC[name](as_floats(xs))).tolist() == expected
    assert [int(getattr(bits, name)(x)) for x in xs] == expected     # plain Python, same source


@pytest.mark.parametrize("name", BINARY)
@given(pairs=st.lists(st.tuples(any_bits, any_bits), min_size=1, max_size=20))
def test_binary_matches_reference(name, pairs):
    a, b = (list(column) for column in zip(*pairs))
    expected = [getattr(ref, name)(x, y) for x, y in pairs]
    assert as_bits(PUBLIC[name](as_floats(a), as_floats(b))).tolist() == expected
    assert [int(getattr(bits, name)(x, y)) for x, y in pairs] == expected


@pytest.mark.parametrize("name", UNARY + BINARY)
def test_matches_reference_on_random_and_special_bits(name):
    """4,000 random bit patterns, plus every special value (every pair of them for binary ops)."""
    rng = np.random.default_rng(sum(map(ord, name)))
    x = np.concatenate([rng.integers(-2**31, 2**31, 2000).astype(np.int32),
                        as_bits(rng.uniform(-150, 150, 2000)), SPECIAL])
    if name in UNARY:
        expected = [getattr(ref, name)(int(v)) for v in x]
        assert as_bits(PUBLIC[name](x.view(np.float32))).tolist() == expected
        return
    a = np.concatenate([x, np.repeat(SPECIAL, SPECIAL.size)])
    b = np.concatenate([np.roll(x, 1), np.tile(SPECIAL, SPECIAL.size)])
    expected = [getattr(ref, name)(int(u), int(v)) for u, v in zip(a, b)]
    assert as_bits(PUBLIC[name](a.view(np.float32), b.view(np.float32))).tolist() == expected


@pytest.mark.parametrize("name", UNARY + BINARY)
def test_parallel_kernel_matches_serial(name):
    """Arrays from PARALLEL_MIN elements run the prange kernel, smaller ones the serial one."""
    from pafree.ops.cpu import PARALLEL_MIN
    rng = np.random.default_rng(7)
    x, y = rng.integers(-2**31, 2**31, (2, PARALLEL_MIN + 99)).astype(np.int32).view(np.float32)
    args = (x,) if name in UNARY else (x, y)
    whole = as_bits(PUBLIC[name](*args))
    pieces = [as_bits(PUBLIC[name](*(a[i:i + 1000] for a in args)))
              for i in range(0, x.size, 1000)]
    np.testing.assert_array_equal(whole, np.concatenate(pieces))


@pytest.mark.parametrize("vector_bits", tuning.VECTOR_BITS)
def test_every_vector_width_gives_the_same_bits(vector_bits):
    """The kernels compiled for each vector width (tuning.py: the one this CPU runs and the
    others), serial and prange, against the reference on random bits and every pair of
    special values; and their machine code has no float multiply."""
    from pafree.audit.kernels import scan_dispatcher
    from pafree.ops import cpu
    rng = np.random.default_rng(vector_bits)
    x = np.concatenate([rng.integers(-2**31, 2**31, 1000).astype(np.int32),
                        as_bits(rng.uniform(-150, 150, 1000)), np.repeat(SPECIAL, SPECIAL.size)])
    y = np.concatenate([rng.integers(-2**31, 2**31, 2000).astype(np.int32),
                        np.tile(SPECIAL, SPECIAL.size)])
    for name in UNARY + BINARY:
        make = cpu.unary_kernels if name in UNARY else cpu.binary_kernels
        args = (x,) if name in UNARY else (x, y)
        expected = [getattr(ref, name)(*map(int, values)) for values in zip(*args)]
        for kernel in make(getattr(bits.FLOAT32, name), tuning.kernel_name(name, vector_bits),
                           vector_bits):
            out = np.empty_like(x)
            kernel(*args, out)
            assert out.tolist() == expected, name
            counts, forbidden = scan_dispatcher(kernel)
            assert forbidden == [], name


@pytest.mark.slow
def test_exhaustive_palog2_paexp2_pasqrt():
    """All 2**32 bit patterns against the reference (minutes; benchmarks/exhaustive.py)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "exhaustive.py"
    spec = importlib.util.spec_from_file_location("exhaustive", path)
    exhaustive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exhaustive)
    assert exhaustive.check(progress=False) == {op: (0, []) for op in exhaustive.REFERENCES}


# ---- laws -------------------------------------------------------------------------------

@given(a=st.lists(any_bits, min_size=1, max_size=30), data=st.data())
def test_pam_commutative(a, data):
    b = data.draw(st.lists(any_bits, min_size=len(a), max_size=len(a)))
    assert as_bits(ops.pam(as_floats(a), as_floats(b))).tolist() == \
        as_bits(ops.pam(as_floats(b), as_floats(a))).tolist()


@given(a=normals(), b=normals())
def test_pam_sign_symmetry(a, b):
    assert as_bits(ops.pam(-np.float32(a), b)) == as_bits(-ops.pam(a, b))


@given(a=normals(-60, 60), k=st.integers(-60, 60), negative=st.booleans())
def test_pam_exact_by_power_of_two(a, k, negative):
    p = -2.0 ** k if negative else 2.0 ** k
    exact = np.float32(a * p)                        # a power-of-two scaling: exact
    assert ops.pam(a, p) == exact and ops.pam(p, a) == exact
    assert ops.pad(a, p) == np.float32(a / p)


@given(a=normals(-60, 60), b=normals(-60, 60))
def test_pad_inverts_pam(a, b):
    assert ops.pad(ops.pam(a, b), b) == np.float32(a)


@given(x=st.floats(0.25, 4.0, exclude_max=True, width=32))
def test_paexp2_inverts_palog2_where_palog2_is_exact(x):
    """bits(x) - ONE fits in 24 bits for x in [1/4, 4): palog2 is exact, the round trip too."""
    assert ops.paexp2(ops.palog2(x)) == np.float32(x)


@given(x=normals(positive=True))
def test_paexp2_palog2_round_trip_error(x):
    """Elsewhere palog2 rounds E + M to 24 bits: the round trip moves bits(x) by at most
    half a float32 spacing of palog2(x), counted in units of 2**-23."""
    log = ops.palog2(x)
    moved = abs(int(as_bits(ops.paexp2(log))) - int(as_bits(x)))
    assert moved <= np.spacing(np.abs(log)) * 2.0 ** 22


@pytest.mark.parametrize("op, increasing", [
    (lambda v, w: ops.pam(v, w), True), (lambda v, w: ops.pam(w, v), True),
    (lambda v, w: ops.pad(v, w), True), (lambda v, w: ops.pad(w, v), False),
    (lambda v, w: ops.paexp2(v), True), (lambda v, w: ops.palog2(v), True),
    (lambda v, w: ops.pasqrt(v), True)], ids=["pam a", "pam b", "pad a", "pad b", "paexp2",
                                              "palog2", "pasqrt"])
@given(v=st.lists(normals(-40, 6, positive=True), min_size=2, max_size=30),
       w=normals(-40, 40, positive=True))
def test_monotone_on_positives(op, increasing, v, w):
    v = np.sort(np.float32(v))
    y = op(v, np.float32(w))
    assert np.all(np.diff(y) >= 0) if increasing else np.all(np.diff(y) <= 0)


# ---- error bounds (SPEC section 2 table) ------------------------------------------------

F_STAR = 1 / math.log(2) - 1                                   # where exp2/log2 err most
PAEXP2_BOUND = (1 + F_STAR) * 2 ** -F_STAR - 1                 # 0.0615
PALOG2_BOUND = F_STAR - math.log2(1 + F_STAR)                  # -0.0861
PASQRT_BOUND = 3 / (2 * math.sqrt(2)) - 1                      # 0.0607
ULP = 2.0 ** -23


def exact_ratio(y, exact):
    """y / exact as a Fraction (y a float32 result, exact a rational)."""
    return Fraction(float(y)) / Fraction(exact)


@given(a=normals(-60, 60), b=normals(-60, 60))
def test_pam_error_in_minus_one_ninth_to_zero(a, b):
    error = exact_ratio(ops.pam(a, b), Fraction(a) * Fraction(b)) - 1
    assert Fraction(-1, 9) <= error <= 0


@given(a=normals(-60, 60), b=normals(-60, 60))
def test_pad_error_in_zero_to_one_eighth(a, b):
    error = exact_ratio(ops.pad(a, b), Fraction(a) / Fraction(b)) - 1
    assert 0 <= error <= Fraction(1, 8)


@pytest.mark.parametrize("a, b", [(1.5, 1.5), (-3.0, 0.75), (1.5, 6.0)])
def test_pam_extreme_attained(a, b):
    assert exact_ratio(ops.pam(a, b), Fraction(a) * Fraction(b)) - 1 == Fraction(-1, 9)


@pytest.mark.parametrize("a, b", [(1.0, 1.5), (4.0, -0.75), (0.5, 12.0)])
def test_pad_extreme_attained(a, b):
    assert exact_ratio(ops.pad(a, b), Fraction(a) / Fraction(b)) - 1 == Fraction(1, 8)


@given(x=st.floats(-126.0, 128.0, exclude_max=True, width=32))
def test_paexp2_error(x):
    """In [0, 0.0615] on the 2**-23 grid (every |x| >= 1); off it the floor costs < 1 ulp."""
    error = float(ops.paexp2(x)) / 2.0 ** float(x) - 1
    on_grid = float(x) * 2 ** 23 == math.floor(float(x) * 2 ** 23)
    assert (0 if on_grid else -ULP) - 1e-15 <= error <= PAEXP2_BOUND + 1e-15


@given(x=normals(positive=True))
def test_palog2_absolute_error(x):
    """In [-0.0861, 0], widened by the float32 rounding of E + M (half a spacing)."""
    y = ops.palog2(x)
    half_spacing = float(np.spacing(np.abs(y))) / 2
    error = float(y) - math.log2(x)
    assert PALOG2_BOUND - half_spacing - 1e-15 <= error <= half_spacing + 1e-15


@given(x=normals(positive=True))
def test_pasqrt_error(x):
    """In [0, 0.0607] up to the final floor (< 1 ulp)."""
    error = float(ops.pasqrt(x)) / math.sqrt(x) - 1
    assert -ULP - 1e-15 <= error <= PASQRT_BOUND + 1e-15


@pytest.mark.parametrize("op, x, reference, bound", [
    (ops.paexp2, F_STAR, lambda v: 2.0 ** v, PAEXP2_BOUND),
    (ops.paexp2, 5 + F_STAR, lambda v: 2.0 ** v, PAEXP2_BOUND),
    (ops.pasqrt, 2.0, math.sqrt, PASQRT_BOUND),
    (ops.pasqrt, 8.0, math.sqrt, PASQRT_BOUND)], ids=["paexp2", "paexp2 x>1", "pasqrt", "pasqrt 8"])
def test_relative_extreme_attained(op, x, reference, bound):
    x = float(np.float32(x))
    assert float(op(x)) / reference(x) - 1 == pytest.approx(bound, abs=1e-6)


@pytest.mark.parametrize("exponent", [0, -3, 7])
def test_palog2_extreme_attained(exponent):
    x = float(np.float32((1 + F_STAR) * 2.0 ** exponent))
    assert float(ops.palog2(x)) - math.log2(x) == pytest.approx(PALOG2_BOUND, abs=1e-6)


@given(x=st.floats(-80.0, 80.0, width=32))
def test_paexp_error_grows_with_range(x):
    """paexp(x) = paexp2(log2(e) ⊙ x): PAM errs by up to -1/9 on t = x log2(e), so
    paexp(x) / e**x lies in [2**(-t/9), 1.0615] for x >= 0, [1, 1.0615 * 2**(-t/9)] for x < 0."""
    t = float(x) * math.log2(math.e)
    ratio = float(ops.paexp(x)) / math.exp(x)
    low = 2.0 ** (-max(t, 0.0) / 9) - 1e-6
    high = (1 + PAEXP2_BOUND) * 2.0 ** (-min(t, 0.0) / 9) + 1e-6
    assert low <= ratio <= high


@given(x=normals(-100, 100, positive=True))
def test_palog_error_grows_with_range(x):
    """palog(x) = palog2(x) ⊘ log2(e): palog2 errs by [-0.0861, 0], PAD by [0, 1/8], so
    palog(x) - ln(x) lies in [min(0, ln x) / 8 - 0.0672, max(0, ln x) / 8]."""
    ln = math.log(x)
    error = float(ops.palog(x)) - ln
    slack = 1e-6 * (1 + abs(ln))
    low = min(0.0, ln) / 8 + PALOG2_BOUND * 9 / 8 / math.log2(math.e)
    assert low - slack <= error <= max(0.0, ln) / 8 + slack


# ---- exact slopes against finite differences ---------------------------------------------
# PAM and PAD are affine on each piece of fixed exponents and carry/borrow k (jointly in A and
# B), and their slopes use the forward's own k: every step that keeps the binades and k moves
# the result by exactly dA * step_A + dB * step_B, from either end of the step. The one-operand
# ops take the piece to the right of a breakpoint.

def step_in_piece(x, steps):
    """x moved by ``steps`` ulps (bit patterns), or None if that leaves x's binade."""
    moved = as_floats(as_bits(np.float32(x)) + np.int32(steps))
    same_binade = (as_bits(moved) >> 23) == (as_bits(np.float32(x)) >> 23)
    return float(moved) if same_binade else None


def mantissa(x):
    return int(as_bits(np.float32(x))) & 0x7FFFFF


def pam_carry(a, b):
    return mantissa(a) + mantissa(b) >= 1 << 23


def pad_borrow(a, b):
    return mantissa(a) < mantissa(b)


def finite_difference(f, x0, x1):
    return (Fraction(float(f(x1))) - Fraction(float(f(x0)))) / (Fraction(x1) - Fraction(x0))


@given(a=normals(-30, 30), b=normals(-30, 30), steps=st.integers(1, 5000))
def test_pam_slope_is_finite_difference(a, b, steps):
    a1 = step_in_piece(a, steps)
    assume(a1 is not None and pam_carry(a, b) == pam_carry(a1, b))
    quotient = finite_difference(lambda v: ops.pam(v, b), a, a1)
    assert quotient == Fraction(float(ops.pam_slope(a, b))) == Fraction(float(ops.pam_slope(a1, b)))


@given(a=normals(-30, 30), b=normals(-30, 30), steps=st.integers(1, 5000), wrt_b=st.booleans())
def test_pad_slopes_are_finite_differences(a, b, steps, wrt_b):
    a1, b1 = (a, step_in_piece(b, steps)) if wrt_b else (step_in_piece(a, steps), b)
    assume(a1 is not None and b1 is not None and pad_borrow(a, b) == pad_borrow(a1, b1))
    i = 1 if wrt_b else 0
    if wrt_b:
        quotient = finite_difference(lambda v: ops.pad(a, v), b, b1)
    else:
        quotient = finite_difference(lambda v: ops.pad(v, b), a, a1)
    assert quotient == Fraction(float(ops.pad_slope(a, b)[i])) == \
        Fraction(float(ops.pad_slope(a1, b1)[i]))


def with_mantissa(sign, exponent, mantissa_field):
    return float(as_floats((-(1 << 31) if sign else 0) | (exponent + 127) << 23 | mantissa_field))


def joint_step_matches_slopes(op, slopes, a, b, steps_a, steps_b, same_piece):
    """Move |A| and |B| up by steps_a and steps_b ulps; if that keeps the binades and
    same_piece(a, b), the result moves by exactly dA * (A1 - A) + dB * (B1 - B)."""
    a1, b1 = step_in_piece(a, steps_a), step_in_piece(b, steps_b)
    assume(a1 is not None and b1 is not None and same_piece(a, b) == same_piece(a1, b1))
    da, db = (Fraction(float(s)) for s in slopes(a, b))
    change = Fraction(float(op(a1, b1))) - Fraction(float(op(a, b)))
    assert change == da * (Fraction(a1) - Fraction(a)) + db * (Fraction(b1) - Fraction(b))


breakpoint_parts = st.tuples(st.booleans(), st.booleans(), st.integers(-30, 30),
                             st.integers(-30, 30), st.integers(0, (1 << 23) - 1))


@given(parts=breakpoint_parts, steps=st.tuples(st.integers(0, 3000), st.integers(0, 3000)))
def test_pam_slopes_at_the_carry_follow_the_forward_piece(parts, steps):
    """At M_A + M_B = 1 (or a power of two A) the forward carries (k = 1; a power of two:
    k = 0): larger magnitudes stay on that piece, and the step along any such joint
    direction is dA * step_A + dB * step_B."""
    negative_a, negative_b, e_a, e_b, m_b = parts
    a = with_mantissa(negative_a, e_a, (1 << 23) - m_b if m_b else 0)
    b = with_mantissa(negative_b, e_b, m_b)
    joint_step_matches_slopes(ops.pam, lambda u, v: (ops.pam_slope(u, v), ops.pam_slope(v, u)),
                              a, b, *steps, pam_carry)


@given(parts=breakpoint_parts, numerator_at_one=st.booleans(),
       steps=st.integers(0, 3000), extra=st.integers(0, 3000))
def test_pad_slopes_at_the_borrow_follow_the_forward_piece(parts, numerator_at_one, steps, extra):
    """At M_A = M_B the forward does not borrow (k = 0): equal steps of |A| and |B| keep
    M_A = M_B, a further step of |A| keeps M_A >= M_B. At M_A = 0 < M_B it borrows (k = 1):
    a further step of |B| keeps M_A < M_B. Either way the result moves by
    dA * step_A + dB * step_B."""
    negative_a, negative_b, e_a, e_b, m_b = parts
    a = with_mantissa(negative_a, e_a, 0 if numerator_at_one else m_b)
    b = with_mantissa(negative_b, e_b, m_b)
    borrow = pad_borrow(a, b)
    steps_a, steps_b = (steps, steps + extra) if borrow else (steps + extra, steps)
    joint_step_matches_slopes(ops.pad, ops.pad_slope, a, b, steps_a, steps_b, pad_borrow)


@given(a=normals(-60, 60), steps=st.integers(1, 5000))
def test_pad_partials_cancel_on_the_diagonal(a, steps):
    """A ⊘ A = 1 for every A, so the derivative along (A, B) -> (A + t, B + t) at A = B is 0."""
    da, db = ops.pad_slope(a, a)
    assert da + db == 0 and ops.pad(a, a) == 1
    a1 = step_in_piece(a, steps)
    assume(a1 is not None)
    assert ops.pad(a1, a1) == 1


@given(x=st.floats(-126.0, 127.0, width=32), steps=st.integers(1, 5000))
def test_paexp2_slope_is_finite_difference(x, steps):
    assume(abs(x) >= 1)                              # on the 2**-23 grid: paexp2 is affine there
    x1 = step_in_piece(x, steps)
    assume(x1 is not None and math.floor(x1) == math.floor(x))
    assert finite_difference(ops.paexp2, x, x1) == Fraction(float(ops.paexp2_slope(x)))


@given(x=st.floats(0.25, 4.0, exclude_max=True, width=32), steps=st.integers(1, 5000))
def test_palog2_slope_is_finite_difference(x, steps):
    x1 = step_in_piece(x, steps)                      # palog2 is exact (unrounded) here
    assume(x1 is not None)
    assert finite_difference(ops.palog2, x, x1) == Fraction(float(ops.palog2_slope(x)))


@given(x=normals(-100, 100, positive=True), half_steps=st.integers(1, 3000))
def test_pasqrt_slope_is_finite_difference(x, half_steps):
    x = float(as_floats(int(as_bits(np.float32(x))) & ~1))   # even bit pattern: (m >> 1) steps evenly
    x1 = step_in_piece(x, 2 * half_steps)
    assume(x1 is not None)
    assert finite_difference(ops.pasqrt, x, x1) == Fraction(float(ops.pasqrt_slope(x)))


# ---- array handling and bad input --------------------------------------------------------

def test_shapes_broadcast_and_scalars():
    a = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    assert ops.pam(a, np.float32([1, 2, 4])).shape == (2, 3)
    assert ops.pam(a[:, :, None], a[:, None, :]).shape == (2, 3, 3)
    assert ops.pam(a.T, 2.0).shape == (3, 2)                    # non-contiguous input
    assert ops.pam(2.0, 3.0).shape == () and ops.palog2(8).dtype == np.float32
    assert ops.paexp2(np.zeros((0, 4))).shape == (0, 4)
    np.testing.assert_array_equal(ops.pam(a.T, 2.0), (a * 2).T)


def test_float64_and_integers_convert_to_float32():
    x64 = np.array([0.1, 1 / 3, 1e30, -7.25])
    np.testing.assert_array_equal(ops.palog2(x64), ops.palog2(x64.astype(np.float32)))
    np.testing.assert_array_equal(ops.pam(np.arange(5), 3), ops.pam(np.arange(5.0), 3.0))
    assert ops.pam([1, 2], [3, 4]).dtype == np.float32


@pytest.mark.parametrize("bad, dtype", [(np.array([1 + 2j]), "complex128"),
                                        (np.array([1.0], dtype=object), "object"),
                                        (np.array(["1.0"]), "<U3")])
@pytest.mark.parametrize("name", ["pam", "paexp2"])
def test_non_real_input_is_a_type_error(name, bad, dtype):
    op = getattr(ops, name)
    with pytest.raises(TypeError, match=rf"{name}.*{dtype}"):
        op(bad, 1.0) if name == "pam" else op(bad)


def test_non_broadcasting_shapes_raise_numpy_error():
    with pytest.raises(ValueError, match="broadcast"):
        ops.pam(np.ones(3), np.ones(4))
