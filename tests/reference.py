"""Slow, independent references for the PA primitives, written from SPEC's E/M equations.

Nothing here adds bit patterns: each float32 is decoded into sign S, exponent
E and mantissa M (a Fraction in [0, 1)), the SPEC formula is applied to those
numbers, and the exact result is encoded again. The special values follow the
SPEC section 3 table and the slope rules of section 4, case by case.

Scalar functions take and return int32 bit values (Python ints), like bits.py.
``fast_*`` are float64 versions of the same equations compiled to NumPy
ufuncs, fast enough for all 2**32 inputs (float64 holds E + M exactly).
"""
import math
from fractions import Fraction

import numba
import numpy as np

QNAN = 0x7FC00000
INF = 0x7F800000
SIGN = -0x80000000
LOG2E = 0x3FB8AA3B                      # float32(log2(e))
E_MIN, E_MAX = -126, 127                # exponent range of normal float32


def decode(x):
    """(kind, S, E, M) of an int32 bit value; kind: 'zero' (also subnormal), 'normal', 'inf', 'nan'."""
    u = x & 0xFFFFFFFF
    s = u >> 31
    field = (u >> 23) & 0xFF
    mant = Fraction(u & 0x7FFFFF, 1 << 23)
    if field == 255:
        return ("nan" if mant else "inf"), s, 128, mant
    if field == 0:
        return "zero", s, 0, Fraction(0)
    return "normal", s, field - 127, mant


def signed(s, magnitude_bits):
    return magnitude_bits - (1 << 31) if s else magnitude_bits


def encode(s, e, m):
    """Bits of (-1)**s * 2**e * (1 + m), m a Fraction on the 2**-23 grid; 0 / inf outside the range."""
    if e > E_MAX:
        return signed(s, INF)
    if e < E_MIN:
        return signed(s, 0)
    frac = m * (1 << 23)
    assert frac.denominator == 1 and 0 <= frac < 1 << 23, m
    return signed(s, ((e + 127) << 23) | int(frac))


def power_of_two(s, e):
    return encode(s, e, Fraction(0))


def value(x):
    """Exact rational value of a finite bit pattern (subnormals count as zero)."""
    kind, s, e, m = decode(x)
    if kind == "zero":
        return Fraction(0)
    assert kind == "normal"
    return (-1) ** s * (1 + m) * Fraction(2) ** e


def round_to_float32(q):
    """Bits of the float32 nearest to the rational q, ties to even (q needs <= 53 significant bits)."""
    return int(np.float32(float(q)).view(np.int32))   # float(q) is exact here


# ---- forward primitives -----------------------------------------------------------------

def pam(a, b):
    (ka, sa, ea, ma), (kb, sb, eb, mb) = decode(a), decode(b)
    s = sa ^ sb
    if "nan" in (ka, kb) or {ka, kb} == {"inf", "zero"}:
        return QNAN
    if "inf" in (ka, kb):
        return signed(s, INF)
    if "zero" in (ka, kb):
        return signed(s, 0)
    carry = int(ma + mb >= 1)
    return encode(s, ea + eb + carry, ma + mb - carry)


def pad(a, b):
    (ka, sa, ea, ma), (kb, sb, eb, mb) = decode(a), decode(b)
    s = sa ^ sb
    if "nan" in (ka, kb) or ka == kb == "inf" or ka == kb == "zero":
        return QNAN
    if ka == "inf" or kb == "zero":
        return signed(s, INF)
    if ka == "zero" or kb == "inf":
        return signed(s, 0)
    borrow = int(ma < mb)
    return encode(s, ea - eb - borrow, ma - mb + borrow)


def paexp2_of(q):
    """paexp2 of a rational q: 2**floor(q) * (1 + frac(q)), frac cut down to the 2**-23 grid."""
    if q >= 128:
        return INF
    if q < -126:
        return 0
    whole = math.floor(q)
    frac = Fraction(math.floor((q - whole) * (1 << 23)), 1 << 23)
    return encode(0, whole, frac)


def paexp2(x):
    kind, s, _, _ = decode(x)
    if kind == "nan":
        return QNAN
    if kind == "inf":
        return 0 if s else INF
    return paexp2_of(value(x))


def palog2(x):
    kind, s, e, m = decode(x)
    if kind == "nan" or s and kind != "zero":
        return QNAN
    if kind == "zero":
        return signed(1, INF)
    if kind == "inf":
        return INF
    return round_to_float32(e + m)


def pasqrt(x):
    """paexp2 of half the unrounded log E + M (SPEC: the exact (bits + ONE) >> 1)."""
    kind, s, e, m = decode(x)
    if kind == "nan" or s and kind != "zero":
        return QNAN
    if kind == "zero":
        return 0
    if kind == "inf":
        return INF
    return paexp2_of((e + m) / 2)


def paexp(x):
    return paexp2(pam(LOG2E, x))


def palog(x):
    return pad(palog2(x), LOG2E)


def papow(x, p):
    return paexp2(pam(p, palog2(x)))


# ---- exact slopes (SPEC section 4) ------------------------------------------------------

# PAM and PAD: k is the forward op's own carry/borrow, computed from the decoded mantissas
# exactly as in pam()/pad() above (a zero has M = 0), so both partials belong to the affine
# piece the forward result lies on.

def pam_slope(a, b):
    """dY/dA = sign(B) 2**(E_B + k), k = [M_A + M_B >= 1]."""
    (ka, _, _, ma), (kb, sb, eb, mb) = decode(a), decode(b)
    if "nan" in (ka, kb):
        return QNAN
    if kb == "zero":
        return signed(sb, 0)
    return power_of_two(sb, eb + int(ma + mb >= 1))


def pad_slope_a(a, b):
    """dY/dA = sign(B) 2**(-E_B - k), k = [M_A < M_B]."""
    (ka, _, _, ma), (kb, sb, eb, mb) = decode(a), decode(b)
    if "nan" in (ka, kb):
        return QNAN
    if kb == "zero":
        return signed(sb, INF)
    return power_of_two(sb, -eb - int(ma < mb))


def pad_slope_b(a, b):
    """dY/dB = -sign(A) 2**(E_A - 2 E_B - k), k = [M_A < M_B]."""
    (ka, sa, ea, ma), (kb, _, eb, mb) = decode(a), decode(b)
    if "nan" in (ka, kb):
        return QNAN
    if ka == "zero":
        return signed(1 - sa, 0)
    if kb == "zero":
        return signed(1 - sa, INF)
    return power_of_two(1 - sa, ea - 2 * eb - int(ma < mb))


def paexp2_slope(x):
    """2**floor(x); saturates like paexp2 (inf from 128, 0 below -126)."""
    kind, s, _, _ = decode(x)
    if kind == "nan":
        return QNAN
    if kind == "inf":
        return 0 if s else INF
    q = value(x)
    if q >= 128:
        return INF
    if q < -126:
        return 0
    return power_of_two(0, math.floor(q))


def palog2_slope(x):
    """2**-E for x > 0; inf at zero, 0 at inf, NaN below zero."""
    kind, s, e, _ = decode(x)
    if kind == "nan" or s and kind != "zero":
        return QNAN
    if kind == "zero":
        return INF
    if kind == "inf":
        return 0
    return power_of_two(0, -e)


def pasqrt_slope(x):
    """2**(-ceil(E/2) - 1) for x > 0; inf at zero, 0 at inf, NaN below zero."""
    kind, s, e, _ = decode(x)
    if kind == "nan" or s and kind != "zero":
        return QNAN
    if kind == "zero":
        return INF
    if kind == "inf":
        return 0
    return power_of_two(0, -math.ceil(Fraction(e, 2)) - 1)


# ---- compiled float64 references for the exhaustive check ----------------------------------
# The same equations on float64 (which holds E + M and the 2**-23 grid exactly), compiled
# as NumPy ufuncs from int32 bits to float32 values, fast enough for all 2**32 inputs.

@numba.njit
def _fields(x):
    u = x & 0xFFFFFFFF
    return u >> 31, (u >> 23) & 0xFF, (u & 0x7FFFFF) / (1 << 23)


@numba.njit
def _exp2_grid(q):
    """2**floor(q) * (1 + frac(q) cut to the 2**-23 grid) for float64 q in [-126, 128)."""
    grid = math.floor(q * (1 << 23))          # exact: a power-of-two scaling, then floor
    whole = math.floor(grid / (1 << 23))
    return np.float32(math.ldexp(1.0 + (grid - whole * (1 << 23)) / (1 << 23), int(whole)))


@numba.vectorize(["float32(int32)"])
def fast_palog2(x):
    s, field, mant = _fields(x)
    if field == 255 and mant != 0 or s == 1 and field != 0:
        return np.float32(np.nan)
    if field == 0:
        return np.float32(-np.inf)
    if field == 255:
        return np.float32(np.inf)
    return np.float32(field - 127 + mant)     # rounds to nearest even


@numba.vectorize(["float32(int32)"])
def fast_paexp2(x):
    s, field, mant = _fields(x)
    if field == 255:
        return np.float32(np.nan) if mant != 0 else np.float32(0.0 if s else np.inf)
    q = 0.0 if field == 0 else math.ldexp(1.0 + mant, field - 127) * (-1.0 if s else 1.0)
    if q >= 128:
        return np.float32(np.inf)
    if q < -126:
        return np.float32(0.0)
    return _exp2_grid(q)


@numba.vectorize(["float32(int32)"])
def fast_pasqrt(x):
    s, field, mant = _fields(x)
    if field == 255 and mant != 0 or s == 1 and field != 0:
        return np.float32(np.nan)
    if field == 0:
        return np.float32(0.0)
    if field == 255:
        return np.float32(np.inf)
    return _exp2_grid((field - 127 + mant) / 2)
