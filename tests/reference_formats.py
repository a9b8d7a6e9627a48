"""Slow, independent reference of the PA primitives in any binary format (SPEC section 7).

``Reference(ew, mw)`` is the format with ew exponent and mw mantissa bits. As in
tests/reference.py (float32), nothing adds bit patterns: each value is decoded
into sign S, exponent E and mantissa M (a Fraction), SPEC's E/M equation is
applied to those numbers, and the exact result is encoded again; palog2's
rounding to nearest even is done on the exact rational. Bits are Python ints,
sign-extended (negative for a set sign bit) like the values of pafree.ops.bits.
"""
import math
from fractions import Fraction

import numba

LOG2E = Fraction(0x3FB8AA3B & 0x7FFFFF | 0x800000, 1 << 23)   # float32(log2(e)) = 1.4426950


class Reference:
    def __init__(self, ew, mw):
        self.ew, self.mw = ew, mw
        self.bias = (1 << (ew - 1)) - 1
        self.width = 1 + ew + mw
        self.top = (1 << ew) - 1                       # the all-ones exponent field
        self.e_min, self.e_max = 1 - self.bias, self.bias
        self.inf = self.top << mw
        self.qnan = self.inf | 1 << (mw - 1)
        self.log2e = self.round(LOG2E)

    # ---- decoding and encoding -------------------------------------------------------------

    def decode(self, x):
        """(kind, S, E, M): kind 'zero' (also subnormal), 'normal', 'inf' or 'nan'."""
        u = x & ((1 << self.width) - 1)
        s = u >> (self.width - 1)
        field = (u >> self.mw) & self.top
        mant = Fraction(u & ((1 << self.mw) - 1), 1 << self.mw)
        if field == self.top:
            return ("nan" if mant else "inf"), s, self.e_max + 1, mant
        if field == 0:
            return "zero", s, 0, Fraction(0)
        return "normal", s, field - self.bias, mant

    def signed(self, s, magnitude):
        return magnitude - (1 << (self.width - 1)) if s else magnitude

    def encode(self, s, e, m):
        """Bits of (-1)**s 2**e (1 + m), m on the 2**-mw grid; signed 0 / inf out of range."""
        if e > self.e_max:
            return self.signed(s, self.inf)
        if e < self.e_min:
            return self.signed(s, 0)
        frac = m * (1 << self.mw)
        assert frac.denominator == 1 and 0 <= frac < 1 << self.mw, m
        return self.signed(s, ((e + self.bias) << self.mw) | int(frac))

    def value(self, x):
        """Exact value of a finite pattern (subnormals count as zero)."""
        kind, s, e, m = self.decode(x)
        assert kind in ("zero", "normal")
        return Fraction(0) if kind == "zero" else (-1) ** s * (1 + m) * Fraction(2) ** e

    def round(self, q):
        """Bits of the rational q rounded to nearest even (normal range: q is a log or a constant)."""
        s, q = int(q < 0), abs(q)
        if q == 0:
            return self.signed(s, 0)
        e = math.floor(math.log2(q))
        e += (Fraction(2) ** (e + 1) <= q) - (Fraction(2) ** e > q)     # exact floor(log2 q)
        scaled = q / Fraction(2) ** e * (1 << self.mw)                   # in [2**mw, 2**(mw+1))
        n = math.floor(scaled)
        n += (scaled - n > Fraction(1, 2)) or (scaled - n == Fraction(1, 2) and n % 2 == 1)
        if n == 2 << self.mw:
            n, e = n >> 1, e + 1
        return self.encode(s, e, Fraction(n, 1 << self.mw) - 1)

    # ---- forward primitives ------------------------------------------------------------------

    def pam(self, a, b):
        (ka, sa, ea, ma), (kb, sb, eb, mb) = self.decode(a), self.decode(b)
        s = sa ^ sb
        if "nan" in (ka, kb) or {ka, kb} == {"inf", "zero"}:
            return self.qnan
        if "inf" in (ka, kb):
            return self.signed(s, self.inf)
        if "zero" in (ka, kb):
            return self.signed(s, 0)
        carry = int(ma + mb >= 1)
        return self.encode(s, ea + eb + carry, ma + mb - carry)

    def pad(self, a, b):
        (ka, sa, ea, ma), (kb, sb, eb, mb) = self.decode(a), self.decode(b)
        s = sa ^ sb
        if "nan" in (ka, kb) or ka == kb == "inf" or ka == kb == "zero":
            return self.qnan
        if ka == "inf" or kb == "zero":
            return self.signed(s, self.inf)
        if ka == "zero" or kb == "inf":
            return self.signed(s, 0)
        borrow = int(ma < mb)
        return self.encode(s, ea - eb - borrow, ma - mb + borrow)

    def paexp2_of(self, q):
        """2**floor(q) (1 + frac(q)), frac cut down to the 2**-mw grid."""
        whole = math.floor(q)
        frac = Fraction(math.floor((q - whole) * (1 << self.mw)), 1 << self.mw)
        return self.encode(0, whole, frac)       # 0 below e_min, inf above e_max

    def paexp2(self, x):
        kind, s, _, _ = self.decode(x)
        if kind == "nan":
            return self.qnan
        if kind == "inf":
            return 0 if s else self.inf
        return self.paexp2_of(self.value(x))

    def palog2(self, x):
        kind, s, e, m = self.decode(x)
        if kind == "nan" or s and kind != "zero":
            return self.qnan
        if kind == "zero":
            return self.signed(1, self.inf)
        if kind == "inf":
            return self.inf
        return self.round(e + m)

    def pasqrt(self, x):
        kind, s, e, m = self.decode(x)
        if kind == "nan" or s and kind != "zero":
            return self.qnan
        if kind == "zero":
            return 0
        if kind == "inf":
            return self.inf
        return self.paexp2_of((e + m) / 2)

    def paexp(self, x):
        return self.paexp2(self.pam(self.log2e, x))

    def palog(self, x):
        return self.pad(self.palog2(x), self.log2e)

    def papow(self, x, p):
        return self.paexp2(self.pam(p, self.palog2(x)))

    # ---- exact slopes (SPEC section 4) ---------------------------------------------------------

    def power_of_two(self, s, e):
        return self.encode(s, e, Fraction(0))

    def pam_slope(self, a, b):
        (ka, _, _, ma), (kb, sb, eb, mb) = self.decode(a), self.decode(b)
        if "nan" in (ka, kb):
            return self.qnan
        if kb == "zero":
            return self.signed(sb, 0)
        return self.power_of_two(sb, eb + int(ma + mb >= 1))

    def pad_slope_a(self, a, b):
        (ka, _, _, ma), (kb, sb, eb, mb) = self.decode(a), self.decode(b)
        if "nan" in (ka, kb):
            return self.qnan
        if kb == "zero":
            return self.signed(sb, self.inf)
        return self.power_of_two(sb, -eb - int(ma < mb))

    def pad_slope_b(self, a, b):
        (ka, sa, ea, ma), (kb, _, eb, mb) = self.decode(a), self.decode(b)
        if "nan" in (ka, kb):
            return self.qnan
        if ka == "zero":
            return self.signed(1 - sa, 0)
        if kb == "zero":
            return self.signed(1 - sa, self.inf)
        return self.power_of_two(1 - sa, ea - 2 * eb - int(ma < mb))

    def paexp2_slope(self, x):
        kind, s, _, _ = self.decode(x)
        if kind == "nan":
            return self.qnan
        if kind == "inf":
            return 0 if s else self.inf
        return self.power_of_two(0, math.floor(self.value(x)))

    def palog2_slope(self, x):
        kind, s, e, _ = self.decode(x)
        if kind == "nan" or s and kind != "zero":
            return self.qnan
        if kind == "zero":
            return self.inf
        if kind == "inf":
            return 0
        return self.power_of_two(0, -e)

    def pasqrt_slope(self, x):
        kind, s, e, _ = self.decode(x)
        if kind == "nan" or s and kind != "zero":
            return self.qnan
        if kind == "zero":
            return self.inf
        if kind == "inf":
            return 0
        return self.power_of_two(0, -math.ceil(Fraction(e, 2)) - 1)


FORMATS = {"float32": Reference(8, 23), "bfloat16": Reference(8, 7), "float16": Reference(5, 10),
           "float8_e5m2": Reference(5, 2)}


# ---- compiled integer PAM and PAD for the exhaustive pair check ------------------------------
# The same E/M equations once more, on integers (M scaled by 2**mw) and written apart from
# pafree.ops.bits: decode to (kind, S, E, M), apply the equation, encode. Fast enough for all
# 2**32 pairs of a 16-bit format; benchmarks/exhaustive.py checks them against Reference above.

ZERO, NORMAL, INF, NAN = 0, 1, 2, 3


@numba.njit
def _decode(x, ew, mw):
    u = x & ((1 << (1 + ew + mw)) - 1)
    s = u >> (ew + mw)
    field = (u >> mw) & ((1 << ew) - 1)
    mant = u & ((1 << mw) - 1)
    bias = (1 << (ew - 1)) - 1
    if field == (1 << ew) - 1:
        return (NAN if mant else INF), s, 0, mant
    if field == 0:
        return ZERO, s, 0, 0
    return NORMAL, s, field - bias, mant


@numba.njit
def _encode(s, e, mant, ew, mw):
    """Sign-extended bits of (-1)**s 2**e (1 + mant 2**-mw); 0 / inf outside the normal range."""
    bias = (1 << (ew - 1)) - 1
    if e > bias:
        mag = ((1 << ew) - 1) << mw
    elif e < 1 - bias:
        mag = 0
    else:
        mag = ((e + bias) << mw) | mant
    return mag - (1 << (ew + mw)) if s else mag


@numba.njit
def fast_pam(a, b, ew, mw):
    ka, sa, ea, ma = _decode(a, ew, mw)
    kb, sb, eb, mb = _decode(b, ew, mw)
    s = sa ^ sb
    if ka == NAN or kb == NAN or (ka == INF and kb == ZERO) or (ka == ZERO and kb == INF):
        return (((1 << ew) - 1) << mw) | (1 << (mw - 1))
    if ka == INF or kb == INF:
        return _encode(s, 1 << ew, 0, ew, mw)
    if ka == ZERO or kb == ZERO:
        return _encode(s, -(1 << ew), 0, ew, mw)
    carry = 1 if ma + mb >= 1 << mw else 0
    return _encode(s, ea + eb + carry, ma + mb - (carry << mw), ew, mw)


@numba.njit
def fast_pad(a, b, ew, mw):
    ka, sa, ea, ma = _decode(a, ew, mw)
    kb, sb, eb, mb = _decode(b, ew, mw)
    s = sa ^ sb
    if ka == NAN or kb == NAN or (ka == INF and kb == INF) or (ka == ZERO and kb == ZERO):
        return (((1 << ew) - 1) << mw) | (1 << (mw - 1))
    if ka == INF or kb == ZERO:
        return _encode(s, 1 << ew, 0, ew, mw)
    if ka == ZERO or kb == INF:
        return _encode(s, -(1 << ew), 0, ew, mw)
    borrow = 1 if ma < mb else 0
    return _encode(s, ea - eb - borrow, ma - mb + (borrow << mw), ew, mw)
