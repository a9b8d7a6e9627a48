"""pafree.ops: the piecewise affine (PA) primitives on float32 arrays.

Each function accepts array-likes (Python scalars, lists, any numpy real
dtype; float64, integers and booleans are converted to float32, float64
rounding to nearest) with numpy broadcasting (shapes that do not broadcast
raise numpy's ValueError), and returns a new float32 ndarray (0-d for scalar
inputs). Complex, object and string inputs raise ``TypeError`` naming the
function and the dtype.

Forward ops: ``pam`` (A ⊙ B), ``pad`` (A ⊘ B), ``paexp2``, ``palog2`` and the
derived ``paexp``, ``palog``, ``pasqrt``, ``papow``. Exact derivatives (SPEC
section 4, always signed powers of two): ``pam_slope`` (dY/dA; dY/dB is
``pam_slope(b, a)``), ``pad_slope`` (returns dY/dA, dY/dB), ``paexp2_slope``,
``palog2_slope``, ``pasqrt_slope``.

Special values follow SPEC section 3: subnormal inputs count as zero, results
flush to zero below the normal range and become inf above it, and every NaN
result is the canonical 0x7FC00000. The bit logic lives in ``bits.py``.
"""
from . import cpu


def pam(a, b):
    """Piecewise affine multiplication A ⊙ B (relative error in [-1/9, 0])."""
    return cpu.binary("pam", a, b)


def pad(a, b):
    """Piecewise affine division A ⊘ B (relative error in [0, 1/8])."""
    return cpu.binary("pad", a, b)


def paexp2(x):
    """2**floor(x) * (1 + frac(x)); 0 below -126, inf from 128."""
    return cpu.unary("paexp2", x)


def palog2(x):
    """E + M for x = 2**E * (1 + M), rounded to nearest float32 (exact for x in [1/4, 4));
    -inf at 0, NaN below."""
    return cpu.unary("palog2", x)


def paexp(x):
    """paexp2(log2(e) ⊙ x); its error grows with |x| (see the README)."""
    return cpu.unary("paexp", x)


def palog(x):
    """palog2(x) ⊘ log2(e)."""
    return cpu.unary("palog", x)


def pasqrt(x):
    """paexp2(palog2(x) ⊘ 2) on the unrounded log: the (bits + ONE) >> 1 trick."""
    return cpu.unary("pasqrt", x)


def papow(x, p):
    """paexp2(p ⊙ palog2(x))."""
    return cpu.binary("papow", x, p)


def pam_slope(a, b):
    """Exact d(A ⊙ B)/dA = sign(B) 2**(E_B + k), k the mantissa carry."""
    return cpu.binary("pam_slope", a, b)


def pad_slope(a, b):
    """Exact (d(A ⊘ B)/dA, d(A ⊘ B)/dB), k the mantissa borrow."""
    return cpu.binary("pad_slope_a", a, b), cpu.binary("pad_slope_b", a, b)


def paexp2_slope(x):
    """Exact d paexp2(x)/dx = 2**floor(x)."""
    return cpu.unary("paexp2_slope", x)


def palog2_slope(x):
    """Exact d palog2(x)/dx = 2**-E."""
    return cpu.unary("palog2_slope", x)


def pasqrt_slope(x):
    """Exact d pasqrt(x)/dx = 2**(-ceil(E/2) - 1)."""
    return cpu.unary("pasqrt_slope", x)


from .gemm import pam_matmul, pam_matmul_exact_grads  # noqa: E402
