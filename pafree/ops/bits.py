"""The piecewise affine arithmetic on float bit patterns: single source of truth.

Every function here takes and returns int32 *values* (the bit patterns of
float32 numbers, as signed integers) and uses only integer add, subtract,
shift, mask and compare. They are plain Python (callable on Python ints for
teaching and debugging) and ``register_jitable`` makes the same source
callable from Numba CPU kernels and CUDA device functions alike.

All intermediate sums are arranged so that they fit in int32 (the comparisons
are done before the add that could overflow), which keeps the CUDA and GEMM
kernels on 32-bit integer lanes.

The format is described by the constants below; a bfloat16 or float16 variant
is the same code with other constants (exponent width, mantissa width, bias).
"""
from numba.extending import register_jitable

# float32 layout: [sign | 8 exponent bits | 23 mantissa bits]
MANT_BITS = 23
EXP_BITS = 8
BIAS = 127
SIGN = -0x80000000                      # the sign bit as an int32 value
MAG = 0x7FFFFFFF                        # everything but the sign
MANT = (1 << MANT_BITS) - 1             # mantissa field
ONE = BIAS << MANT_BITS                 # bits(1.0) = 0x3F800000
MIN_NORMAL = 1 << MANT_BITS             # bits(2**-126): smallest normal magnitude
INF = ((1 << EXP_BITS) - 1) << MANT_BITS  # bits(inf) = 0x7F800000
QNAN = INF | (1 << (MANT_BITS - 1))     # the one NaN pafree produces: 0x7FC00000
EMAX = (1 << EXP_BITS) - 2              # largest biased exponent of a normal (254)
# paexp2 saturates outside [-(BIAS - 1), BIAS + 1): 2**-126 .. 2**128
EXP2_LO = -(BIAS - 1)
EXP2_HI = BIAS + 1


@register_jitable
def pam(a, b):
    """A ⊙ B: add the magnitudes' bits, subtract bits(1.0), xor the signs."""
    sign = (a ^ b) & SIGN
    ma = a & MAG
    mb = b & MAG
    if ma > INF or mb > INF:
        return QNAN
    if ma == INF or mb == INF:
        if ma < MIN_NORMAL or mb < MIN_NORMAL:
            return QNAN                  # inf ⊙ 0
        return sign | INF
    if ma < MIN_NORMAL or mb < MIN_NORMAL:
        return sign                      # zero or subnormal operand: signed zero
    ea = ma - ONE                        # the biased add, rearranged not to overflow
    if ea >= INF - mb:
        return sign | INF
    if ea < MIN_NORMAL - mb:
        return sign
    return sign | (ea + mb)


@register_jitable
def pad(a, b):
    """A ⊘ B: subtract the magnitudes' bits, add bits(1.0), xor the signs."""
    sign = (a ^ b) & SIGN
    ma = a & MAG
    mb = b & MAG
    if ma > INF or mb > INF:
        return QNAN
    if ma == INF:
        if mb == INF:
            return QNAN                  # inf ⊘ inf
        return sign | INF
    if ma < MIN_NORMAL:
        if mb < MIN_NORMAL:
            return QNAN                  # 0 ⊘ 0
        return sign
    if mb < MIN_NORMAL:
        return sign | INF                # nonzero ⊘ 0
    if mb == INF:
        return sign
    d = ma - mb                          # in (-INF, INF): fits
    if d >= INF - ONE:
        return sign | INF
    if d < MIN_NORMAL - ONE:
        return sign
    return sign | (d + ONE)


@register_jitable
def fixed23(x):
    """floor(x * 2**23) for a finite float32 whose |x| < 2**7, from its bits.

    Pure integer work: the significand shifted by the exponent, rounded down.
    Subnormals count as zero.
    """
    m = x & MAG
    if m < MIN_NORMAL:
        return 0
    e = (m >> MANT_BITS) - BIAS
    sig = (m & MANT) | MIN_NORMAL        # 1.M as an integer scaled by 2**23
    if e >= 0:
        v = sig << e
        return -v if x < 0 else v
    if e < -MANT_BITS - 1:               # |x * 2**23| < 1
        return -1 if x < 0 else 0
    s = -e
    if x < 0:
        return -((sig + (1 << s) - 1) >> s)
    return sig >> s


@register_jitable
def paexp2(x):
    """paexp2(x) = 2**floor(x) * (1 + frac(x)): bits = floor(x * 2**23) + bits(1.0)."""
    m = x & MAG
    if m > INF:
        return QNAN
    if m >= (BIAS + 7) << MANT_BITS:     # |x| >= 128 (or inf): saturate
        return 0 if x < 0 else INF
    f = fixed23(x)
    if f >= EXP2_HI << MANT_BITS:
        return INF
    if f < EXP2_LO << MANT_BITS:
        return 0
    return f + ONE


@register_jitable
def int_to_float(v, k):
    """Bits of float32(v) * 2**k for an integer |v| < 2**31, rounded to nearest even.

    Integer-only, so every backend rounds identically; the 2**k is an
    exponent add (the result must stay normal, which palog2 guarantees).
    """
    if v == 0:
        return 0
    sign = 0
    u = v
    if v < 0:
        sign = SIGN
        u = -v
    n = 0                                # n = floor(log2(u)), by binary search
    t = u
    if t >= 1 << 16:
        t >>= 16
        n += 16
    if t >= 1 << 8:
        t >>= 8
        n += 8
    if t >= 1 << 4:
        t >>= 4
        n += 4
    if t >= 1 << 2:
        t >>= 2
        n += 2
    if t >= 1 << 1:
        n += 1
    if n > MANT_BITS:
        shift = n - MANT_BITS
        q = u >> shift
        rest = u - (q << shift)
        half = 1 << (shift - 1)
        if rest > half or rest == half and (q & 1) == 1:
            q += 1                       # may reach 2**24: carries into the exponent
    else:
        q = u << (MANT_BITS - n)
    return sign | (((n + BIAS + k) << MANT_BITS) + q - MIN_NORMAL)


@register_jitable
def palog2(x):
    """palog2(x) = E + M: float32(bits(x) - bits(1.0)) * 2**-23."""
    m = x & MAG
    if m > INF or x < 0 and m >= MIN_NORMAL:
        return QNAN
    if m < MIN_NORMAL:
        return SIGN | INF                # log of zero (subnormals flush): -inf
    if m == INF:
        return INF
    return int_to_float(m - ONE, -MANT_BITS)


# float32 constants of the derived ops, as bits
LOG2E = 0x3FB8AA3B                      # float32(log2(e)) = 1.44269502
LN2 = 0x3F317218                        # float32(ln(2)) = 0.693147182


@register_jitable
def paexp(x):
    """paexp(x) = paexp2(log2(e) ⊙ x)."""
    return paexp2(pam(LOG2E, x))


@register_jitable
def palog(x):
    """palog(x) = palog2(x) ⊘ log2(e)."""
    return pad(palog2(x), LOG2E)


@register_jitable
def papow(x, p):
    """papow(x, p) = paexp2(p ⊙ palog2(x))."""
    return paexp2(pam(p, palog2(x)))


@register_jitable
def exp_field(x):
    """The biased exponent field of x (0 for zero/subnormal, 255 for inf/NaN)."""
    return (x & MAG) >> MANT_BITS


@register_jitable
def pow2(sign, e):
    """sign | 2**(e - BIAS) given the biased exponent e: clamps to 0 or inf."""
    if e <= 0:
        return sign
    if e > EMAX:
        return sign | INF
    return sign | (e << MANT_BITS)


@register_jitable
def pam_slope(a, b):
    """Exact dY/dA of Y = A ⊙ B: sign(B) * 2**(E_B + k), k = [M_A + M_B >= 1]."""
    ma = a & MAG
    mb = b & MAG
    if ma > INF or mb > INF:
        return QNAN
    if mb < MIN_NORMAL:
        return b & SIGN                  # B is zero: Y is flat in A
    k = 0
    if ma >= MIN_NORMAL and (ma & MANT) + (mb & MANT) >= MIN_NORMAL:
        k = 1
    return pow2(b & SIGN, exp_field(b) + k)


@register_jitable
def pad_slope_a(a, b):
    """Exact dY/dA of Y = A ⊘ B: sign(B) * 2**(-E_B - k), k = [M_A < M_B]."""
    ma = a & MAG
    mb = b & MAG
    if ma > INF or mb > INF:
        return QNAN
    if mb < MIN_NORMAL:
        return (b & SIGN) | INF
    mant_a = (ma & MANT) if ma >= MIN_NORMAL else 0
    k = 1 if mant_a < (mb & MANT) else 0
    return pow2(b & SIGN, 2 * BIAS - exp_field(b) - k)


@register_jitable
def pad_slope_b(a, b):
    """Exact dY/dB of Y = A ⊘ B: -sign(A) * 2**(E_A - 2 E_B - k), k = [M_A < M_B]."""
    ma = a & MAG
    mb = b & MAG
    if ma > INF or mb > INF:
        return QNAN
    neg_sign = (a & SIGN) ^ SIGN
    if ma < MIN_NORMAL:
        return neg_sign                  # A is zero: Y is flat in B
    if mb < MIN_NORMAL:
        return neg_sign | INF
    k = 1 if (ma & MANT) < (mb & MANT) else 0
    return pow2(neg_sign, exp_field(a) - 2 * exp_field(b) + 2 * BIAS - k)


@register_jitable
def paexp2_slope(x):
    """Exact d paexp2(x)/dx = 2**floor(x) (0 and inf where paexp2 saturates)."""
    m = x & MAG
    if m > INF:
        return QNAN
    if m >= (BIAS + 7) << MANT_BITS:
        return 0 if x < 0 else INF
    f = fixed23(x)
    if f >= EXP2_HI << MANT_BITS:
        return INF
    if f < EXP2_LO << MANT_BITS:
        return 0
    return pow2(0, (f >> MANT_BITS) + BIAS)


@register_jitable
def palog2_slope(x):
    """Exact d palog2(x)/dx = 2**(-E_x) for x > 0 (inf at 0, NaN below)."""
    m = x & MAG
    if m > INF or x < 0 and m >= MIN_NORMAL:
        return QNAN
    if m < MIN_NORMAL:
        return INF
    if m == INF:
        return 0
    return pow2(0, 2 * BIAS - exp_field(x))


@register_jitable
def pasqrt(x):
    """pasqrt(x) = paexp2(palog2(x) ⊘ 2), the classic (bits + ONE) >> 1.

    Uses the unrounded E + M (the bit pattern itself), so it is the exact
    piecewise affine square root.
    """
    m = x & MAG
    if m > INF or x < 0 and m >= MIN_NORMAL:
        return QNAN
    if m < MIN_NORMAL:
        return 0
    if m == INF:
        return INF
    return (m + ONE) >> 1


@register_jitable
def pasqrt_slope(x):
    """Exact d pasqrt(x)/dx = 2**(-ceil(E_x / 2) - 1)."""
    m = x & MAG
    if m > INF or x < 0 and m >= MIN_NORMAL:
        return QNAN
    if m < MIN_NORMAL:
        return INF
    if m == INF:
        return 0
    e = exp_field(x) - BIAS
    return pow2(0, BIAS - ((e + 1) >> 1) - 1)
