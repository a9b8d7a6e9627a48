"""The PA primitives on bfloat16, float16 and float8_e5m2 (SPEC section 7): bit for bit
against the independent per-format reference (tests/reference_formats.py), the error bounds
of SPEC section 2 in each format, and the dtype dispatch. The exhaustive checks of the 16-bit
formats (every input pair of PAM and PAD, every input of the unary ops) are in
benchmarks/exhaustive.py (-m slow here); float8_e5m2's is a test here."""
import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref32
from pafree import ops
from pafree.ops import bits
from reference_formats import FORMATS as REFERENCES
from test_ops import BINARY, UNARY

DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16),
          "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2)}
F_STAR = 1 / math.log(2) - 1
PAEXP2_BOUND = (1 + F_STAR) * 2 ** -F_STAR - 1                 # 0.0615
PALOG2_BOUND = F_STAR - math.log2(1 + F_STAR)                  # -0.0861
PASQRT_BOUND = 3 / (2 * math.sqrt(2)) - 1                      # 0.0607


def special_bits(fmt):
    """Zeros, subnormals, the normal range's ends, inf, NaNs, and values near 1 and
    paexp2's saturation points, as sign-extended bit values of the format."""
    f = bits.FORMATS[fmt]
    mags = [0, 1, f.MIN_NORMAL - 1, f.MIN_NORMAL, f.MIN_NORMAL + 1, f.ONE, f.ONE + 1,
            f.ONE + (1 << (f.MANT_BITS - 1)), f.ONE - 1, f.INF - 1, f.INF, f.INF + 1, f.QNAN,
            f.MAG, f.EXP2_SAT, f.EXP2_SAT - 1, f.LOG2E,
            (f.BIAS - 1 + f.EXP_BITS - 1) << f.MANT_BITS,        # bits(BIAS - 1): paexp2's lower end
            ((f.BIAS + f.EXP_BITS - 2) << f.MANT_BITS) | 1]     # just above it
    return sorted(set(mags) | {m + f.SIGN for m in mags})


def int_type(fmt):
    return np.dtype(f"i{DTYPES[fmt].itemsize}")


def every_pattern(fmt):
    """(low, high): the sign-extended bit values of the format are low <= x < high."""
    half = 1 << (8 * DTYPES[fmt].itemsize - 1)
    return -half, half


def as_format(values, fmt):
    return np.array(values, int_type(fmt)).view(DTYPES[fmt])


def bits_of(array):
    return array.view(f"i{array.dtype.itemsize}").tolist()


def format_bits(fmt):
    """Any bit pattern of the format, biased towards the special values."""
    low, high = every_pattern(fmt)
    return st.one_of(st.integers(low, high - 1), st.sampled_from(special_bits(fmt)))


@pytest.mark.parametrize("fmt", list(DTYPES))
@pytest.mark.parametrize("name", UNARY + BINARY)
def test_matches_reference_on_random_and_special_bits(fmt, name):
    """3,000 random patterns, plus every special value (every pair of them for binary ops);
    the kernels on arrays of the dtype and the plain-Python bit logic alike."""
    rng = np.random.default_rng(18)
    special = special_bits(fmt)
    random = rng.integers(*every_pattern(fmt), 3000).tolist()
    reference, logic = getattr(REFERENCES[fmt], name), getattr(bits.FORMATS[fmt], name)
    fn = getattr(ops, name)
    if name in UNARY:
        xs = special + random
        expected = [reference(x) for x in xs]
        got = fn(as_format(xs, fmt))
        assert got.dtype == DTYPES[fmt]
        assert bits_of(got) == expected
        assert [int(logic(x)) for x in xs[:300]] == expected[:300]
    else:
        pairs = [(a, b) for a in special for b in special] + list(zip(random, random[::-1]))
        a, b = (list(column) for column in zip(*pairs))
        expected = [reference(x, y) for x, y in pairs]
        got = fn(as_format(a, fmt), as_format(b, fmt))
        assert got.dtype == DTYPES[fmt]
        assert bits_of(got) == expected
        assert [int(logic(x, y)) for x, y in pairs[:300]] == expected[:300]


@pytest.mark.parametrize("fmt", list(DTYPES))
@given(data=st.data())
def test_properties_match_reference(fmt, data):
    name = data.draw(st.sampled_from(UNARY + BINARY))
    args = [data.draw(format_bits(fmt)) for _ in range(1 if name in UNARY else 2)]
    got = getattr(ops, name)(*(as_format([x], fmt) for x in args))
    assert bits_of(got) == [getattr(REFERENCES[fmt], name)(*args)]


@pytest.mark.parametrize("name", UNARY + BINARY)
def test_format_reference_agrees_with_float32_reference(name):
    """The per-format reference instantiated at (8, 23) is tests/reference.py."""
    rng = np.random.default_rng(7)
    xs = rng.integers(-(1 << 31), 1 << 31, (200, 2)).tolist()
    mine, theirs = getattr(REFERENCES["float32"], name), getattr(ref32, name)
    for a, b in xs:
        args = (a,) if name in UNARY else (a, b)
        assert mine(*args) == theirs(*args)


# ---- conversion from float32 (palog2's last step; mixed-precision training's rounding) -----

@pytest.mark.parametrize("fmt", list(DTYPES))
def test_from_float32_rounds_like_the_cast_on_normal_results(fmt):
    """Round to nearest even as ml_dtypes/numpy cast, except: results the cast makes
    subnormal flush to signed zero, float32 subnormals count as zero, and every NaN
    becomes the canonical one."""
    f = bits.FORMATS[fmt]
    rng = np.random.default_rng(3)
    tiny_up = [f.TINY_UP + d for d in (-1, 0, 1)]          # around rounding up to the smallest normal
    x = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 4000),
                        np.array([0x7F800000, 0xFF800000, 0x7FC00001, 0x477FF000, 0x477FEFFF,
                                  0x38800000, 0x387FFFFF, 0x33800000, 0x007F8000] + tiny_up,
                                 np.int64)]).astype(np.uint32)
    x = x.view(np.int32)[::-1]        # the special patterns first
    got = np.array([f.from_float32(int(v)) for v in x[:4000]], np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        cast = x[:4000].view(np.float32).astype(DTYPES[fmt])
    expected = cast.view(int_type(fmt)).astype(np.int64)
    mag = expected & f.MAG
    tiny = (mag < f.MIN_NORMAL) | (np.abs(x[:4000].view(np.float32)) < np.finfo(np.float32).tiny)
    expected = np.where(tiny, expected & f.SIGN, expected)
    expected = np.where(np.isnan(cast.astype(np.float32)), f.QNAN, expected)
    assert got.tolist() == expected.tolist()


# ---- error bounds (SPEC section 2 table) in each format -------------------------------------

def normals(fmt, lo=None, hi=None, positive=False):
    """Normal values of the format with exponent E in [lo, hi], as exact Fractions and bits."""
    f = bits.FORMATS[fmt]
    lo = 1 - f.BIAS if lo is None else lo
    hi = f.BIAS if hi is None else hi
    return st.builds(
        lambda s, e, m: (s * f.SIGN) | (e + f.BIAS) << f.MANT_BITS | m,
        st.just(0) if positive else st.integers(0, 1), st.integers(lo, hi),
        st.integers(0, (1 << f.MANT_BITS) - 1))


def value(fmt, x):
    return REFERENCES[fmt].value(x)


def half_range(fmt):
    """Exponents whose products and quotients stay normal."""
    bias = bits.FORMATS[fmt].BIAS
    return dict(lo=-(bias // 2) + 1, hi=bias // 2 - 1)


def run(name, fmt, *args):
    return bits_of(getattr(ops, name)(*(as_format([x], fmt) for x in args)))[0]


@pytest.mark.parametrize("fmt", list(DTYPES))
@given(data=st.data())
def test_pam_pad_error_bounds(fmt, data):
    a, b = (data.draw(normals(fmt, **half_range(fmt))) for _ in range(2))
    va, vb = value(fmt, a), value(fmt, b)
    assert Fraction(-1, 9) <= value(fmt, run("pam", fmt, a, b)) / (va * vb) - 1 <= 0
    assert 0 <= value(fmt, run("pad", fmt, a, b)) / (va / vb) - 1 <= Fraction(1, 8)


@pytest.mark.parametrize("fmt", list(DTYPES))
def test_pam_pad_extremes_attained(fmt):
    f = bits.FORMATS[fmt]
    one_half = f.ONE | 1 << (f.MANT_BITS - 1)                   # 1.5: M = 0.5
    assert value(fmt, run("pam", fmt, one_half, one_half)) == 2      # 2.25 * (1 - 1/9)
    assert value(fmt, run("pad", fmt, f.ONE, one_half)) == Fraction(3, 4)   # (2/3) * (1 + 1/8)


@pytest.mark.parametrize("fmt", list(DTYPES))
@given(data=st.data())
def test_unary_error_bounds(fmt, data):
    """paexp2 in [0, 0.0615] up to the floor to the 2**-Mw grid (one ulp of the format),
    palog2 in [-0.0861, 0] widened by its rounding (half a spacing), pasqrt in [0, 0.0607]
    up to one ulp."""
    f = bits.FORMATS[fmt]
    ulp = 2.0 ** -f.MANT_BITS
    x = data.draw(normals(fmt, hi=f.EXP_BITS - 2))              # |x| < BIAS + 1: paexp2's range
    y = run("paexp2", fmt, x)
    if y & f.MAG and y & f.MAG != f.INF:
        error = float(value(fmt, y)) / 2.0 ** float(value(fmt, x)) - 1
        assert -ulp - 1e-12 <= error <= PAEXP2_BOUND + 1e-12
    p = data.draw(normals(fmt, positive=True))
    log = float(value(fmt, run("palog2", fmt, p)))
    half_spacing = 2.0 ** (math.floor(math.log2(abs(log))) - f.MANT_BITS - 1) if log else 0
    assert PALOG2_BOUND - half_spacing - 1e-12 <= log - math.log2(value(fmt, p)) <= half_spacing + 1e-12
    root = float(value(fmt, run("pasqrt", fmt, p)))
    assert -ulp - 1e-12 <= root / math.sqrt(value(fmt, p)) - 1 <= PASQRT_BOUND + 1e-12


# ---- dispatch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", list(DTYPES))
def test_dtype_in_dtype_out_and_scalars_join(fmt):
    x = np.array([[1.5, -3.0]], DTYPES[fmt])
    assert ops.pam(x, 2.0).dtype == DTYPES[fmt]
    assert ops.pam(x, 2.0).tolist() == ops.pam(x, np.array(2.0, DTYPES[fmt])).tolist()
    assert ops.pad_slope(x, x)[1].dtype == DTYPES[fmt]
    assert ops.palog2(x).shape == (1, 2)


@pytest.mark.parametrize("name", UNARY + BINARY)
def test_float8_e5m2_exhaustive(name):
    """Every input (every pair for binary ops) of float8_e5m2 against the exact reference."""
    xs = list(range(*every_pattern("float8_e5m2")))
    reference = getattr(REFERENCES["float8_e5m2"], name)
    if name in UNARY:
        assert bits_of(getattr(ops, name)(as_format(xs, "float8_e5m2"))) == [reference(x) for x in xs]
    else:
        a, b = np.meshgrid(xs, xs)
        got = bits_of(getattr(ops, name)(as_format(a.ravel(), "float8_e5m2"),
                                          as_format(b.ravel(), "float8_e5m2")))
        assert got == [reference(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist())]


def test_mixed_formats_raise():
    with pytest.raises(TypeError, match="mixed dtypes"):
        ops.pam(np.ones(2, ml_dtypes.bfloat16), np.ones(2, np.float32))
    with pytest.raises(TypeError, match="mixed dtypes"):
        ops.pad(np.ones(2, np.float16), np.ones(2, ml_dtypes.bfloat16))


@pytest.mark.slow
def test_exhaustive_formats():
    """All 2**32 pairs of PAM and PAD and all 2**16 inputs of the unary ops, in both 16-bit
    formats (minutes; benchmarks/exhaustive.py --formats)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "exhaustive.py"
    spec = importlib.util.spec_from_file_location("exhaustive", path)
    exhaustive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exhaustive)
    results = exhaustive.check_formats(progress=False)
    assert {key: count for key, (count, _, _) in results.items()} == dict.fromkeys(results, 0)
