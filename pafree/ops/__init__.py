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
``pam_slope(b, a)``), ``pad_slope`` (returns dY/dA, dY/dB; ``pad_slope_a`` and
``pad_slope_b`` give one each), ``paexp2_slope``, ``palog2_slope``, ``pasqrt_slope``.
The elementwise ones are generated from the one table in ``elementwise.py``.

``ml_dtypes.bfloat16``, ``numpy.float16`` and ``ml_dtypes.float8_e5m2`` arrays are
computed in their own format and keep their dtype (SPEC section 7; docs/arithmetic.md).

Special values follow SPEC section 3: subnormal inputs count as zero, results
flush to zero below the normal range and become inf above it, and every NaN
result is the canonical 0x7FC00000. The bit logic lives in ``bits.py``.
"""
from . import cpu, elementwise

# pam, pad, paexp2, palog2, paexp, palog, pasqrt, papow and the exact slopes (pam_slope,
# pad_slope_a, pad_slope_b, paexp2_slope, palog2_slope, pasqrt_slope): one function per
# entry of the table in elementwise.py, each running its cpu.py kernel
elementwise.generate(cpu, globals())


def pad_slope(a, b):
    """Exact (d(A ⊘ B)/dA, d(A ⊘ B)/dB), k the mantissa borrow."""
    return pad_slope_a(a, b), pad_slope_b(a, b)  # noqa: F821  (generated above)


from .gemm import pam_matmul, pam_matmul_exact_grads  # noqa: E402
