"""Appendix figure (exp family): PA values and both PA derivatives.

Rows: exp2 and exp on x in [-3, 3], log2 and ln on x in [0.25, 4]. Columns
as in fig_multiply_family.py. The log rows show the absolute error of the
value: log vanishes at x = 1, where a relative error means nothing.

The ops, as SPEC section 2 defines them (float32 constants):
paexp(x) = paexp2(log2(e) ⊙ x) and palog(x) = palog2(x) ⊘ log2(e).

Derivatives, with dY = 1 (SPEC section 4):
- exact: paexp2_slope(x) and palog2_slope(x); through the graph for the
  derived ops, a product of power-of-two slopes (itself a power of two, so
  the product is taken with an exact PAM):
  exp: paexp2_slope(v) ⊙ pam_slope(x, log2 e), v = log2(e) ⊙ x;
  ln:  pad_slope(u, log2 e)[0] ⊙ palog2_slope(x), u = palog2(x).
- approx: the analytic derivative evaluated with PA operations (the rules of
  pafree.autograd.registry, as the authors' code has them):
  exp2: Y ⊙ ln 2;  exp: Y (dY ⊙ Y with dY = 1);
  log2: 1 ⊘ (x ⊙ ln 2);  ln: 1 ⊘ x.
  (Chaining the primitives' rules through the graph instead gave exp
  (Y ⊙ ln 2) ⊙ log2(e) and ln (1 ⊘ log2(e)) ⊘ (x ⊙ ln 2): the same times
  ln 2 ⊙ log2(e) ≈ 0.915, resp. divided by it.)

Guaranteed bounds on the approx derivative's relative error, composed from
the SPEC error table (PAM [-1/9, 0], PAD [0, 1/8], paexp2 [0, 0.0615]):
exp2: [-1/9, 0.0615]; log2: [0, (9/8)² - 1]; ln: [0, 1/8];
exp: paexp's own error, which grows with |x| because the PAM by log2(e) errs
by up to 1/9 inside the exponent: [2^(-|x| log2(e) / 9) - 1, 2^(|x| log2(e) / 9) · 1.0615 - 1].
tests/test_figures.py checks the saved numbers against these bounds.

    python figures/fig_exp_family.py   # writes exp_family.png/.pdf/.npz here
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from pafree import ops  # noqa: E402
from pafree.figures import save_derivative_grid  # noqa: E402

LN2 = np.float32(np.log(2))
LOG2E = np.float32(np.log2(np.e))


def rows(n):
    """The four rows on n points; take n even, so that x = 0 is not among them: the
    breakpoints of log2(e) ⊙ x pile up there, and no linear piece starts or ends at 0."""
    x = np.linspace(-3, 3, n, dtype=np.float32)
    x64 = x.astype(np.float64)
    exp2 = ops.paexp2(x)
    v = ops.pam(LOG2E, x)
    exp = ops.paexp2(v)

    xl = np.linspace(0.25, 4, n, dtype=np.float32)
    xl64 = xl.astype(np.float64)
    u = ops.palog2(xl)
    x_ln2 = ops.pam(xl, LN2)
    return [
        dict(key="exp2", label="exp2(x)", pa_label="paexp2(x)", x=x, error="relative",
             true=np.exp2(x64), pa=exp2, dtrue=np.exp2(x64) * np.log(2),
             exact=ops.paexp2_slope(x), approx=ops.pam(exp2, LN2)),
        dict(key="exp", label="exp(x)", pa_label="paexp(x)", x=x, error="relative",
             true=np.exp(x64), pa=ops.paexp(x), dtrue=np.exp(x64),
             exact=ops.pam(ops.paexp2_slope(v), ops.pam_slope(x, LOG2E)),
             approx=exp),
        dict(key="log2", label="log2(x)", pa_label="palog2(x)", x=xl, error="absolute",
             true=np.log2(xl64), pa=u, dtrue=1 / (xl64 * np.log(2)),
             exact=ops.palog2_slope(xl), approx=ops.pad(1.0, x_ln2)),
        dict(key="log", label="ln(x)", pa_label="palog(x)", x=xl, error="absolute",
             true=np.log(xl64), pa=ops.palog(xl), dtrue=1 / xl64,
             exact=ops.pam(ops.pad_slope(u, LOG2E)[0], ops.palog2_slope(xl)),
             approx=ops.pad(1.0, xl)),
    ]


def make(out_dir, n=2000):
    return save_derivative_grid(rows(n), "Exp family: PA values and derivatives", out_dir, "exp_family")


if __name__ == "__main__":
    make(Path(__file__).parent)
