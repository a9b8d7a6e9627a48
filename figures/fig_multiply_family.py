"""Appendix figure (multiply family): PA values and both PA derivatives, x in [0.5, 4].

Rows: 1.5·x = pam(1.5, x), 1.5/x = pad(1.5, x), x/1.5 = pad(x, 1.5),
x² = pam(x, x) and sqrt(x) = pasqrt(x). Columns: the function against its PA
version, the relative error of the PA value, the derivatives (standard, PA
exact, PA approx) and their relative error against the standard derivative.

The two PA derivatives follow SPEC section 4, with dY = 1:
- exact: the true slope of the piecewise affine function, always a signed
  power of two: ``pam_slope``, ``pad_slope``, ``pasqrt_slope``. x² = x ⊙ x
  uses x on both sides, so its slope is the sum of the two partial slopes,
  2 · pam_slope(x, x), again a power of two.
- approx: the backward rule of each primitive, through the graph that
  defines the op:
  1.5 ⊙ x: dx = 1 ⊙ 1.5 (= 1.5, exact);
  1.5 ⊘ x: dx = -(1 ⊙ Y) ⊘ x with Y = 1.5 ⊘ x;
  x ⊘ 1.5: dx = 1 ⊘ 1.5 (= 0.75, the PAD worst case, +12.5 %);
  x ⊙ x: dx = 1 ⊙ x + x ⊙ 1 (= 2x, exact: the backward only multiplies by 1);
  pasqrt(x): dx = 1 ⊘ (2 ⊙ Y), the analytic derivative evaluated with PA
  (SPEC section 4; pasqrt is a primitive with this rule, as the authors' code
  has it; 2 ⊙ Y is exact).

Guaranteed bounds on the approx derivative's relative error, composed from
the SPEC error table (PAM in [-1/9, 0], PAD in [0, 1/8], pasqrt in
[0, 0.0607]; a product of (1 + e_i) for the ops in the chain):
1.5·x and x²: 0 (exact); 1.5/x: [0, (9/8)² - 1 = 0.266]; x/1.5: 1/8;
sqrt: [1/1.0607 - 1, 1/8] (pasqrt's error inverted, one PAD up).
tests/test_figures.py checks the saved numbers against these bounds.

    python figures/fig_multiply_family.py   # writes multiply_family.png/.pdf/.npz here
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from pafree import ops  # noqa: E402
from pafree.figures import save_derivative_grid  # noqa: E402


def rows(n):
    x = np.linspace(0.5, 4, n, dtype=np.float32)
    x64 = x.astype(np.float64)

    recip = ops.pad(1.5, x)
    sqrt_approx = ops.pad(1.0, ops.pam(2.0, ops.pasqrt(x)))
    return [
        dict(key="scale", label="1.5·x", pa_label="1.5 ⊙ x", x=x, error="relative",
             true=1.5 * x64, pa=ops.pam(1.5, x), dtrue=np.full_like(x64, 1.5),
             exact=ops.pam_slope(x, 1.5), approx=np.broadcast_to(ops.pam(1.0, 1.5), x.shape)),
        dict(key="reciprocal", label="1.5/x", pa_label="1.5 ⊘ x", x=x, error="relative",
             true=1.5 / x64, pa=recip, dtrue=-1.5 / x64**2,
             exact=ops.pad_slope(1.5, x)[1], approx=-ops.pad(ops.pam(1.0, recip), x)),
        dict(key="divide", label="x/1.5", pa_label="x ⊘ 1.5", x=x, error="relative",
             true=x64 / 1.5, pa=ops.pad(x, 1.5), dtrue=np.full_like(x64, 1 / 1.5),
             exact=ops.pad_slope(x, 1.5)[0], approx=np.broadcast_to(ops.pad(1.0, 1.5), x.shape)),
        dict(key="square", label="x²", pa_label="x ⊙ x", x=x, error="relative",
             true=x64**2, pa=ops.pam(x, x), dtrue=2 * x64,
             exact=ops.pam_slope(x, x) + ops.pam_slope(x, x),
             approx=ops.pam(1.0, x) + ops.pam(x, 1.0)),
        dict(key="sqrt", label="sqrt(x)", pa_label="pasqrt(x)", x=x, error="relative",
             true=np.sqrt(x64), pa=ops.pasqrt(x), dtrue=0.5 / np.sqrt(x64),
             exact=ops.pasqrt_slope(x), approx=sqrt_approx),
    ]


def make(out_dir, n=2001):
    return save_derivative_grid(rows(n), "Multiply family: PA values and derivatives", out_dir, "multiply_family")


if __name__ == "__main__":
    make(Path(__file__).parent)
