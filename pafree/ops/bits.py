"""The piecewise affine arithmetic on float bit patterns: single source of truth.

Every function here takes and returns int32 *values* (the bit patterns of
float32 numbers, as signed integers; of a narrower format, sign-extended) and uses only integer add, subtract,
shift, mask, compare, min/max and select, plus palog2's int32 -> float32
conversion (``int_to_float``). They are plain Python (callable on
Python ints for teaching and debugging; they then return numpy int32
scalars) and ``register_jitable`` makes the same source callable from Numba
CPU kernels and CUDA device functions alike.

Written to vectorize:
- Branch-free: every special case (NaN, inf, zero, overflow, underflow) is
  computed as a flag and folded in with a select (``a if flag else b``),
  so LLVM turns a kernel's loop into SIMD code without branches.
- On 32-bit lanes: Numba types int32 arithmetic as int64; the ``np.int32``
  around every add, subtract and shift keeps the values (and the vector
  lanes) 32 bits wide. Each intermediate is arranged to fit in int32 for
  *every* input bit pattern (saturating with min before an add that could
  overflow), so the unselected lanes compute harmless values too.

Semantics (SPEC sections 2-4), decisions worth knowing:
- Subnormal inputs count as zero everywhere; results below the normal range
  flush to zero, above it become inf.
- Every NaN result is the canonical quiet NaN ``QNAN`` (0x7FC00000, positive).
- palog2 rounds E + M (up to 31 significant bits) to the nearest float32,
  ties to even, by the int32 -> float32 conversion, which IEEE 754 defines
  identically on every backend. It is exact while ``bits(x) - ONE`` fits in
  24 bits (about x in [1/4, 4)); elsewhere the rounding costs up to half an
  ulp of E + M.
- pasqrt is the exact bit trick ``(bits + ONE) >> 1``, i.e. paexp2 of the
  *unrounded* half-log: rounding palog2 first would only add error.
- Exact slopes are signed powers of two computed from the exponent fields.
  PAM and PAD use the carry/borrow k of the forward op itself (SPEC section
  4's table), so both partials are the gradient of the one affine piece the
  forward result lies on: the chain rule then gives that piece's slope in
  every direction (A ⊘ A is flat and its partials cancel). Choosing a side
  per operand instead would mix two pieces. For positive operands the
  forward's piece is the one to the right of a breakpoint. The one-operand
  slopes (paexp2, palog2, pasqrt) take the segment to the right, which is
  where their forward floor lands too. Where the forward op saturates
  (paexp2 at +-128, exponents out of range) the slope saturates too (inf or
  0). A zero or subnormal operand counts as mantissa 0 in k.

The code is written once for any binary format (``bit_logic(exponent bits,
mantissa bits)``, SPEC section 7): float32 (the plain names of this module),
bfloat16 and float16 are its instances, each compiled with its own constants;
palog2 rounds E + M to nearest even in the format.
"""
from types import SimpleNamespace

import numpy as np
from numba.extending import register_jitable


def bit_logic(EXP_BITS, MANT_BITS):
    """The bit logic of the binary format with EXP_BITS exponent and MANT_BITS mantissa bits.

    Returns a namespace of the format's constants and register_jitable functions;
    Numba compiles each function's constants (closure variables) in as literals,
    so every format gets its own specialised machine code. Bit patterns of a
    format narrower than 32 bits travel sign-extended in int32 (an int16 value
    of a 16-bit format is one): SIGN is negative in every format, ``x < 0`` is
    the sign test and ``x >> 31`` its mask, and the low bits of a result are
    the format's pattern. Every intermediate stays inside the format's own
    magnitude range (the same arrangement as for float32), so the adds are the
    format's integer adds (int16 for the 16-bit formats).
    """
    # layout [sign | EXP_BITS exponent bits | MANT_BITS mantissa bits]; float32's values shown
    BIAS = (1 << (EXP_BITS - 1)) - 1        # 127
    MAG = (1 << (EXP_BITS + MANT_BITS)) - 1  # everything but the sign: 0x7FFFFFFF
    SIGN = -MAG - 1                         # the sign bit as a (sign-extended) value: -0x80000000
    MANT = (1 << MANT_BITS) - 1             # mantissa field
    ONE = BIAS << MANT_BITS                 # bits(1.0) = 0x3F800000
    MIN_NORMAL = 1 << MANT_BITS             # bits(2**-126): smallest normal magnitude
    INF = ((1 << EXP_BITS) - 1) << MANT_BITS  # bits(inf) = 0x7F800000
    QNAN = INF | (1 << (MANT_BITS - 1))     # the one NaN pafree produces: 0x7FC00000
    EMAX = (1 << EXP_BITS) - 2              # largest biased exponent of a normal (254)
    # paexp2 is finite and normal on [-(BIAS - 1), BIAS + 1) = [-126, 128)
    EXP2_LO = -(BIAS - 1)
    EXP2_SAT = (BIAS + EXP_BITS - 1) << MANT_BITS  # bits(2**7) = bits(BIAS + 1): |x| from here saturates
    F32_SHIFT = 23 - MANT_BITS              # float32 mantissa bits the format lacks
    # float32 bits of 2**(1 - BIAS) * (1 - 2**-(MANT_BITS + 1)): the smallest magnitude that
    # rounds (on the subnormal grid) to the smallest normal; float32's own smallest normal
    # for formats with its exponent range
    TINY_UP = max(((128 - BIAS) << 23) - (1 << F32_SHIFT), 0x00800000)


    @register_jitable
    def pam(a, b):
        """A ⊙ B: add the magnitudes' bits, subtract bits(1.0), xor the signs."""
        sign = np.int32((a ^ b) & SIGN)
        ma = np.int32(a & MAG)
        mb = np.int32(b & MAG)
        lo = min(ma, mb)
        hi = max(ma, mb)
        # ma + mb - ONE saturated at INF; the min keeps the add inside int32
        mag = np.int32(min(np.int32(ma - ONE), np.int32(INF - mb)) + mb)
        zero = (lo < MIN_NORMAL) | (mag < MIN_NORMAL)   # zero/subnormal operand or underflow
        mag = np.int32(0 if zero else mag)
        mag = np.int32(INF if hi >= INF else mag)       # inf operand (NaN is handled below)
        # NaN operand (written as inf exponent with a mantissa: LLVM would fuse "hi > INF"
        # and "INF - mb" into an overflow intrinsic that does not vectorize), or inf ⊙ 0
        nan = (hi >= INF) & (((hi & MANT) != 0) | (lo < MIN_NORMAL))
        return np.int32(QNAN if nan else sign | mag)


    @register_jitable
    def pad(a, b):
        """A ⊘ B: subtract the magnitudes' bits, add bits(1.0), xor the signs."""
        sign = np.int32((a ^ b) & SIGN)
        ma = np.int32(a & MAG)
        mb = np.int32(b & MAG)
        # ma - mb + ONE saturated at INF (ma - mb always fits in int32)
        mag = np.int32(min(np.int32(ma - mb), INF - ONE) + ONE)
        zero = (ma < MIN_NORMAL) | (mb == INF) | (mag < MIN_NORMAL)  # 0 ⊘ b, a ⊘ inf, underflow
        mag = np.int32(0 if zero else mag)
        mag = np.int32(INF if (ma == INF) | (mb < MIN_NORMAL) else mag)  # inf ⊘ b, a ⊘ 0
        nan = ((max(ma, mb) > INF) | ((ma == INF) & (mb == INF))
               | ((ma < MIN_NORMAL) & (mb < MIN_NORMAL)))  # NaN operand, inf ⊘ inf, 0 ⊘ 0
        return np.int32(QNAN if nan else sign | mag)


    @register_jitable
    def fixed(x):
        """floor(x * 2**MANT_BITS) for |x| < BIAS + 1 (2**7 for float32), from its bits;
        zero for subnormals.

        Pure integer work: the significand shifted by the exponent. A negative x
        rounds toward -inf with the identity floor(-y) = ~((y' - 1) >> s), where
        y' is the significand before the shift. Other inputs (|x| >= BIAS + 1,
        inf, NaN) give some value below INF >> 1 that the callers select away.
        """
        m = np.int32(x & MAG)
        neg = np.int32(x >> 31)                   # -1 for negative x, else 0
        e = np.int32((m >> MANT_BITS) - BIAS)
        sig = np.int32((m & MANT) | MIN_NORMAL)    # 1.M as an integer scaled by 2**MANT_BITS
        left = np.int32(min(max(e, 0), EXP_BITS - 2))  # e <= 6 for |x| < 128
        right = np.int32(min(max(-e, 0), 31))
        f = np.int32(np.int32(np.int32(sig << left) + neg) >> right) ^ neg
        return np.int32(0 if m < MIN_NORMAL else f)


    @register_jitable
    def paexp2(x):
        """paexp2(x) = 2**floor(x) * (1 + frac(x)): bits = floor(x * 2**MANT_BITS) + bits(1.0).

        0 below 1 - BIAS (-126) and for -inf, inf from BIAS + 1 (128); subnormal x counts as 0.
        """
        m = np.int32(x & MAG)
        f = fixed(x)
        r = np.int32(0 if f < EXP2_LO << MANT_BITS else np.int32(f + ONE))  # < INF
        r = np.int32(np.int32(0 if x < 0 else INF) if m >= EXP2_SAT else r)
        return np.int32(QNAN if m > INF else r)


    if F32_SHIFT == 0:
        @register_jitable
        def from_float32(r):
            """float32 bits in float32: as they are."""
            return np.int32(r)

        @register_jitable
        def to_float32(x):
            """float32 bits in float32: as they are."""
            return np.int32(x)
    else:
        @register_jitable
        def to_float32(x):
            """The float32 bits of the format's value x: exact (a wider format), with the
            exponent rebiased; subnormal x flushes to signed zero, NaN -> float32's QNAN."""
            m = np.int32(x & MAG)
            r = np.int32(np.int32(m << F32_SHIFT) + ((127 - BIAS) << 23))
            r = np.int32(0 if m < MIN_NORMAL else r)
            r = np.int32(0x7F800000 if m >= INF else r)
            sign = np.int32(np.int32(x >> 31) & -0x80000000)
            return np.int32(0x7FC00000 if m > INF else sign | r)

        @register_jitable
        def from_float32(r):
            """The format's bits of the float32 with bits r: rounded to nearest even (as
            the cast), except that a result below the normal range (a subnormal of the
            format) is a signed zero, as are float32 subnormals; signed inf above the
            range; NaN -> QNAN.

            Integer work only: the rounding adds half an ulp of the format (less one, plus
            the kept lowest bit: ties go to even) and cuts; a carry moves into the exponent.
            Below the normal range the cast rounds on the subnormal grid: up to MIN_NORMAL
            from TINY_UP on.
            """
            m = np.int32(r & 0x7FFFFFFF)
            half = np.int32(((1 << F32_SHIFT) >> 1) - 1 + ((m >> F32_SHIFT) & 1))
            rounded = np.int32(np.int32(min(m, 0x7F800000) + half) >> F32_SHIFT)
            mag = np.int32(rounded - ((127 - BIAS) << MANT_BITS))
            mag = np.int32(mag if mag >= MIN_NORMAL else (MIN_NORMAL if m >= TINY_UP else 0))
            mag = np.int32(0 if m < 0x00800000 else mag)
            mag = np.int32(INF if mag >= INF else mag)
            sign = np.int32(np.int32(r >> 31) & SIGN)
            return np.int32(QNAN if m > 0x7F800000 else sign | mag)

    @register_jitable
    def int_to_float(v, k):
        """The format's bits of v * 2**k for an integer |v| < 2**31, rounded to nearest even.

        The conversion is the hardware's int32 -> float32 (x86 cvtdq2ps, CUDA
        cvt.rn.f32.s32; NumPy's cast in plain Python): IEEE 754 rounds it to
        nearest even on every backend, and it is a conversion, not a multiply.
        The 2**k is an exponent add (the caller keeps the result normal). A
        narrower format then rounds that float32, exact for |v| < 2**24, once.
        """
        r = np.int32(np.float32(v).view(np.int32))
        return from_float32(np.int32(0 if v == 0 else np.int32(r + np.int32(k << 23))))


    @register_jitable
    def palog2(x):
        """palog2(x) = E + M: (bits(x) - bits(1.0)) * 2**-MANT_BITS, rounded to nearest even.

        -inf at zero and subnormals (either sign), NaN below zero, inf at inf.
        """
        m = np.int32(x & MAG)
        r = int_to_float(np.int32(m - ONE), -MANT_BITS)
        r = np.int32(SIGN | INF if m < MIN_NORMAL else r)
        r = np.int32(INF if m == INF else r)
        nan = (m > INF) | ((x < 0) & (m >= MIN_NORMAL))
        return np.int32(QNAN if nan else r)


    # constants of the derived ops, as the format's bits (rounded from float32's)
    LOG2E = int(from_float32(0x3FB8AA3B))  # float32(log2(e)) = 1.44269502
    LN2 = int(from_float32(0x3F317218))    # float32(ln(2)) = 0.693147182


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
    def pasqrt(x):
        """pasqrt(x) = paexp2(palog2(x) ⊘ 2) on the unrounded log: (bits + ONE) >> 1.

        Exact piecewise affine square root (halving E + M is exact on the bit
        pattern; ONE is even, so the shift can go first and the sum cannot
        overflow). 0 at zero/subnormals, inf at inf, NaN below zero.
        """
        m = np.int32(x & MAG)
        r = np.int32((m >> 1) + (ONE >> 1))
        r = np.int32(0 if m < MIN_NORMAL else r)
        r = np.int32(INF if m == INF else r)
        nan = (m > INF) | ((x < 0) & (m >= MIN_NORMAL))
        return np.int32(QNAN if nan else r)


    @register_jitable
    def exp_field(x):
        """The biased exponent field of x (0 for zero/subnormal, all ones for inf/NaN)."""
        return np.int32((x & MAG) >> MANT_BITS)


    @register_jitable
    def pow2(sign, e):
        """sign | 2**(e - BIAS) given the biased exponent e: 0 for e <= 0, inf above EMAX."""
        return np.int32(sign | np.int32(min(max(e, 0), EMAX + 1) << MANT_BITS))


    @register_jitable
    def pam_carry(a, b):
        """k = [M_A + M_B >= 1], the mantissa carry of A ⊙ B (a zero/subnormal counts as M = 0)."""
        mant_a = np.int32(a & MANT if (a & MAG) >= MIN_NORMAL else 0)
        mant_b = np.int32(b & MANT if (b & MAG) >= MIN_NORMAL else 0)
        return np.int32(1 if np.int32(mant_a + mant_b) >= MIN_NORMAL else 0)


    @register_jitable
    def pad_borrow(a, b):
        """k = [M_A < M_B], the mantissa borrow of A ⊘ B (a zero/subnormal counts as M = 0)."""
        mant_a = np.int32(a & MANT if (a & MAG) >= MIN_NORMAL else 0)
        mant_b = np.int32(b & MANT if (b & MAG) >= MIN_NORMAL else 0)
        return np.int32(1 if mant_a < mant_b else 0)


    @register_jitable
    def pam_slope(a, b):
        """Exact dY/dA of Y = A ⊙ B: sign(B) * 2**(E_B + k), k = [M_A + M_B >= 1].

        k is the forward op's carry, so dY/dA and dY/dB = pam_slope(b, a) are the
        gradient of the one affine piece that A ⊙ B lies on. Signed zero when B is
        zero; NaN when either operand is NaN.
        """
        ma = np.int32(a & MAG)
        mb = np.int32(b & MAG)
        sign = np.int32(b & SIGN)
        r = pow2(sign, np.int32(exp_field(b) + pam_carry(a, b)))
        r = np.int32(sign if mb < MIN_NORMAL else r)   # B is zero: Y is flat in A
        return np.int32(QNAN if max(ma, mb) > INF else r)


    @register_jitable
    def pad_slope_a(a, b):
        """Exact dY/dA of Y = A ⊘ B: sign(B) * 2**(-E_B - k), k = [M_A < M_B].

        k is the forward op's borrow, shared with pad_slope_b: one affine piece.
        Signed inf when B is zero; NaN when either operand is NaN.
        """
        ma = np.int32(a & MAG)
        mb = np.int32(b & MAG)
        sign = np.int32(b & SIGN)
        r = pow2(sign, np.int32(2 * BIAS - np.int32(exp_field(b) + pad_borrow(a, b))))
        r = np.int32(sign | INF if mb < MIN_NORMAL else r)
        return np.int32(QNAN if max(ma, mb) > INF else r)


    @register_jitable
    def pad_slope_b(a, b):
        """Exact dY/dB of Y = A ⊘ B: -sign(A) * 2**(E_A - 2 E_B - k), k = [M_A < M_B].

        k is the forward op's borrow, shared with pad_slope_a: one affine piece
        (at A = B the two partials cancel, as A ⊘ A = 1). Signed zero when A is
        zero, signed inf when B is zero (A nonzero); NaN when either operand is NaN.
        """
        ma = np.int32(a & MAG)
        mb = np.int32(b & MAG)
        sign = np.int32((a & SIGN) ^ SIGN)
        k = pad_borrow(a, b)
        e = np.int32(np.int32(exp_field(a) + 2 * BIAS) - np.int32(np.int32(2 * exp_field(b)) + k))
        r = pow2(sign, e)
        r = np.int32(sign | INF if mb < MIN_NORMAL else r)
        r = np.int32(sign if ma < MIN_NORMAL else r)   # A is zero: Y is flat in B
        return np.int32(QNAN if max(ma, mb) > INF else r)


    @register_jitable
    def paexp2_slope(x):
        """Exact d paexp2(x)/dx = 2**floor(x): 0 below 1 - BIAS and at -inf, inf from BIAS + 1."""
        m = np.int32(x & MAG)
        r = pow2(0, np.int32((fixed(x) >> MANT_BITS) + BIAS))
        r = np.int32(np.int32(0 if x < 0 else INF) if m >= EXP2_SAT else r)
        return np.int32(QNAN if m > INF else r)


    @register_jitable
    def palog2_slope(x):
        """Exact d palog2(x)/dx = 2**(-E_x) for x > 0 (flushes to 0 for E_x = BIAS).

        inf at zero/subnormals, 0 at inf, NaN below zero.
        """
        m = np.int32(x & MAG)
        r = pow2(0, np.int32(2 * BIAS - exp_field(x)))
        r = np.int32(INF if m < MIN_NORMAL else r)
        r = np.int32(0 if m == INF else r)
        nan = (m > INF) | ((x < 0) & (m >= MIN_NORMAL))
        return np.int32(QNAN if nan else r)


    @register_jitable
    def pasqrt_slope(x):
        """Exact d pasqrt(x)/dx = 2**(-ceil(E_x / 2) - 1).

        inf at zero/subnormals, 0 at inf, NaN below zero.
        """
        m = np.int32(x & MAG)
        e = np.int32(exp_field(x) - BIAS)
        r = pow2(0, np.int32(BIAS - 1 - np.int32(np.int32(e + 1) >> 1)))
        r = np.int32(INF if m < MIN_NORMAL else r)
        r = np.int32(0 if m == INF else r)
        nan = (m > INF) | ((x < 0) & (m >= MIN_NORMAL))
        return np.int32(QNAN if nan else r)

    return SimpleNamespace(**locals())


FLOAT32 = bit_logic(8, 23)
BFLOAT16 = bit_logic(8, 7)
FLOAT16 = bit_logic(5, 10)
FLOAT8_E5M2 = bit_logic(5, 2)           # IEEE-like; E4M3 "fn" (no inf) would need its own rules
FORMATS = {"float32": FLOAT32, "bfloat16": BFLOAT16, "float16": FLOAT16,
           "float8_e5m2": FLOAT8_E5M2}

# float32's constants and functions under their plain names (bits.pam, bits.ONE, ...):
# what every float32 kernel, the GEMM identities below and the optimizers use
globals().update(vars(FLOAT32))


# ------------------------------------------------------------ GEMM identities
# What the PAM GEMMs (pafree/ops/gemm/) rely on to do a PAM, or an exact slope
# times a PAM, in one or two integer ops per term. Each is tested against pam /
# pam_slope in tests/test_bits_identities.py. Magnitudes below are ``bits & MAG``;
# the bound checks (pam_surely_*, slope_bounds) take magnitudes and compute in int64.
# inline="always" (inlined in Numba's IR, before LLVM sees the loop): called in the
# GEMMs' innermost loops as ordinary calls, they left those loops 3x slower in the
# process that compiled them (not when loaded from the disk cache).

EXP = INF                               # the exponent field (the bits of inf)
NOT_MANT = ~MANT                        # sign and exponent fields
EXP_TOP = 1 << (MANT_BITS + EXP_BITS - 1)   # the exponent field's top bit
INT32_MAX = 0x7FFFFFFF
# |a| + |b| - ONE >= MIN_NORMAL, i.e. A ⊙ B does not flush, iff |b| > PAM_NORMAL_BASE - |a|
PAM_NORMAL_BASE = ONE + MIN_NORMAL - 1  # 0x3FFFFFFF


@register_jitable(inline="always")
def flushed_magnitude(x):
    """|x| as bits, 0 for zero and subnormal x (which every PA op treats as zero)."""
    mag = np.int32(x & MAG)
    return np.int32(mag if mag >= MIN_NORMAL else 0)


@register_jitable(inline="always")
def pam_threshold(a, offset):
    """offset + t(a) such that, for finite a and b, A ⊙ B != 0 iff
    ``offset + flushed_magnitude(b) > pam_threshold(a, offset)``.

    t(a) = PAM_NORMAL_BASE - |a| (the product does not underflow), kept above
    MIN_NORMAL - 1 so that a zero b (magnitude 0) fails the test, and INT32_MAX
    for a zero or subnormal a. Branch-free on purpose (LLVM turns a select here
    into a branch on a == 0, which mispredicts on gradients full of zeros).
    """
    mag = np.int32(a & MAG)
    t = np.int32(max(np.int32(PAM_NORMAL_BASE - mag), np.int32(MIN_NORMAL - 1)) + offset)
    tiny = np.int32(np.int32(mag - MIN_NORMAL) >> 31)       # -1 for zero/subnormal a
    return np.int32(t | np.int32(tiny & INT32_MAX))


@register_jitable(inline="always")
def pam_bias(b):
    """bits(b) - bits(1.0), wrapping: b pre-biased for ``pam_biased`` (the sign rides along)."""
    return np.int32(b - ONE)


@register_jitable(inline="always")
def pam_biased(a, b_biased):
    """A ⊙ B from a and pam_bias(b): one integer add, exact whenever A ⊙ B is a normal number
    (not zero, not flushed, not overflowed); the carry-free add also xors the signs."""
    return np.int32(a + b_biased)


@register_jitable(inline="always")
def pam_surely_normal(a_lo, b_lo):
    """True when every A ⊙ B with |a| >= a_lo and |b| >= b_lo is nonzero (does not flush).
    Int64 sums: any int32 magnitudes."""
    a_lo = np.int64(a_lo)
    b_lo = np.int64(b_lo)
    return a_lo >= MIN_NORMAL and b_lo >= MIN_NORMAL and a_lo + b_lo - ONE >= MIN_NORMAL


@register_jitable(inline="always")
def pam_surely_finite(a_hi, b_hi):
    """True when every A ⊙ B with |a| <= a_hi and |b| <= b_hi is finite (no inf, no NaN
    operand, no overflow). Int64 sums: any int32 magnitudes."""
    a_hi = np.int64(a_hi)
    b_hi = np.int64(b_hi)
    return a_hi < INF and b_hi < INF and a_hi + b_hi - ONE < INF


@register_jitable(inline="always")
def slope_base(b):
    """b with zero and subnormal values flushed to signed zero: the base of pam_slope(., b)."""
    return np.int32(b if (b & MAG) >= MIN_NORMAL else b & SIGN)


@register_jitable(inline="always")
def slope_carry(a):
    """The mantissa field of a (0 for zero and subnormal a): what carries into the slope."""
    return np.int32(a & MANT if (a & MAG) >= MIN_NORMAL else 0)


@register_jitable(inline="always")
def slope_bits(u):
    """pam_slope(a, b) = slope_bits(slope_base(b) + slope_carry(a)) for any non-NaN a, b.

    Adding M_A to B's bits carries into B's exponent exactly when M_A + M_B >= 1
    (pam_carry); masking the mantissa leaves sign(B) * 2**(E_B + k). With
    ``slope_carry(a) - ONE`` in the sum it gives ``pam_bias`` of the slope
    instead (ONE's mantissa field is zero): the slope pre-biased for pam_biased.
    """
    return np.int32(u & NOT_MANT)


@register_jitable(inline="always")
def slope_magnitude(u):
    """|pam_slope(a, b)| from u = slope_base(b) + slope_carry(a): u's exponent field."""
    return np.int32(u & EXP)


@register_jitable(inline="always")
def slope_magnitude_biased(u):
    """|pam_slope(a, b)| + MIN_NORMAL from u = slope_base(b) + slope_carry(a) - ONE, for
    slopes below inf: u's exponent field is E_s - 127 mod 256, and flipping its top bit
    gives E_s + 1."""
    return np.int32(np.int32(u & EXP) ^ EXP_TOP)


@register_jitable(inline="always")
def slope_bounds(base_lo, base_hi):
    """(lo, hi) bounds of |pam_slope(a, b)| over any a and the b whose flushed magnitudes
    lie in [base_lo, base_hi]: 2**E_B times 1 or 2 (int64)."""
    return np.int64(base_lo & EXP), np.int64(base_hi & EXP) + MIN_NORMAL
