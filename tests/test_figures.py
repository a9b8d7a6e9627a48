"""The figure scripts: each one runs headless and its saved numbers say what the paper says.

Every check reads the .npz a script wrote and recomputes the claim from those
numbers with references written here (float64 formulas of the SPEC, the SPEC
error table), not with the plotting code.
"""
from types import SimpleNamespace

import numpy as np
import pytest

from pafree import figures, ops

PAM_ERR = (-1 / 9, 0.0)  # SPEC section 2 error table
PAD_ERR = (0.0, 1 / 8)
EXP2_ERR = (0.0, 0.0615)
SQRT_ERR = (0.0, 0.0607)

# a small resolution per script, so the whole module stays fast
SMALL = {
    "fig_overview": dict(n=161),
    "fig_pam_error": dict(n=65),
    "fig_multiply_family": dict(n=301),
    "fig_exp_family": dict(n=300),  # even, as the script asks: x = 0 is off the grid
    "fig_dot_product": dict(max_log2_k=6, m=32),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Run this module's figure scripts into one folder; name -> written paths.

    (fig_schedule.py, the optimizer helper's, is tested with the optimizer.)
    """
    out = tmp_path_factory.mktemp("figures")
    return {name: figures.load_script(figures.FIGURES_DIR / f"{name}.py").make(out, **kwargs)
            for name, kwargs in SMALL.items()}


def data(made, script):
    return np.load(made[script][2])


def test_every_figure_is_written_headless(made):
    import matplotlib

    assert set(SMALL) <= {path.stem for path in figures.figure_scripts(figures.FIGURES_DIR)}
    assert matplotlib.get_backend().lower() == "agg"
    for script, paths in made.items():
        name = script.removeprefix("fig_")
        assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf", f"{name}.npz"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_cli_runs_every_script_and_reports_a_missing_folder(tmp_path, monkeypatch, capsys):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "fig_a.py").write_text(
        "def make(out_dir):\n    path = out_dir / 'a.txt'\n    path.write_text('a')\n"
        "    return [path]\n")
    (scripts / "helper.py").write_text("raise RuntimeError('not a figure script')\n")
    monkeypatch.setattr(figures, "FIGURES_DIR", scripts)
    assert figures.run(SimpleNamespace(out=tmp_path / "out")) == 0
    assert (tmp_path / "out" / "a.txt").read_text() == "a"

    monkeypatch.setattr(figures, "FIGURES_DIR", tmp_path / "missing")
    assert figures.run(SimpleNamespace(out=tmp_path / "out")) == 1
    assert "editable" in capsys.readouterr().err


def pam_reference(a, b):
    """PAM of positive normal numbers from SPEC section 2, in float64 (exact here)."""
    fa, ea = np.frexp(np.asarray(a, np.float64))  # a = fa 2^ea, fa in [0.5, 1)
    fb, eb = np.frexp(np.asarray(b, np.float64))
    mantissa = (2 * fa - 1) + (2 * fb - 1)
    carry = mantissa >= 1
    return np.ldexp(1 + mantissa - carry, ea - 1 + eb - 1 + carry)


def test_pam_error_minimum_is_minus_one_ninth_at_one_and_a_half(made):
    d = data(made, "fig_pam_error")
    x1, x2, pam = d["x1"], d["x2"], d["pam"]
    np.testing.assert_array_equal(pam, pam_reference(x1, x2))
    rel = pam / (x1.astype(np.float64) * x2) - 1
    np.testing.assert_allclose(d["rel_error_percent"], 100 * rel, rtol=1e-6, atol=1e-9)
    assert rel.min() == pytest.approx(-1 / 9, abs=1e-7)
    low = np.unravel_index(np.argmin(rel), rel.shape)
    assert (x1[low], x2[low]) == (1.5, 1.5)
    assert rel.max() <= 0 and rel[0, 0] == rel[-1, -1] == 0  # exact at powers of two


# row: (script, PA function of x as the SPEC defines it, true function, its derivative,
#       value error bound or None, approx-derivative bound as a function of x)
ROWS = {
    "scale": ("fig_multiply_family", lambda x: ops.pam(1.5, x), lambda x: 1.5 * x,
              lambda x: np.full_like(x, 1.5), PAM_ERR, lambda x: PAM_ERR),
    "reciprocal": ("fig_multiply_family", lambda x: ops.pad(1.5, x), lambda x: 1.5 / x,
                   lambda x: -1.5 / x**2, PAD_ERR, lambda x: (0.0, (9 / 8) ** 2 - 1)),
    "divide": ("fig_multiply_family", lambda x: ops.pad(x, 1.5), lambda x: x / 1.5,
               lambda x: np.full_like(x, 1 / 1.5), PAD_ERR, lambda x: PAD_ERR),
    "square": ("fig_multiply_family", lambda x: ops.pam(x, x), lambda x: x**2,
               lambda x: 2 * x, PAM_ERR, lambda x: PAM_ERR),
    # 1 ⊘ (2 ⊙ Y): pasqrt's error inverted, one PAD up
    "sqrt": ("fig_multiply_family", ops.pasqrt, np.sqrt, lambda x: 0.5 / np.sqrt(x),
             SQRT_ERR, lambda x: (1 / (1 + SQRT_ERR[1]) - 1, 1 / 8)),
    "exp2": ("fig_exp_family", ops.paexp2, np.exp2, lambda x: np.exp2(x) * np.log(2),
             EXP2_ERR, lambda x: (-1 / 9, EXP2_ERR[1])),
    # approx = Y = paexp(x) itself: the PAM by log2(e) errs by up to 1/9 inside the exponent,
    # so the bound widens with |x|
    "exp": ("fig_exp_family", ops.paexp, np.exp, np.exp, None,
            lambda x: (2 ** (-np.abs(x) * np.log2(np.e) / 9) - 1,
                       2 ** (np.abs(x) * np.log2(np.e) / 9) * (1 + EXP2_ERR[1]) - 1)),
    "log2": ("fig_exp_family", ops.palog2, np.log2, lambda x: 1 / (x * np.log(2)), None,
             lambda x: (0.0, (9 / 8) ** 2 - 1)),
    "log": ("fig_exp_family", ops.palog, np.log, lambda x: 1 / x, None,
            lambda x: PAD_ERR),                             # 1 ⊘ x
}
TINY = 1e-6  # float32 rounding of the constants ln 2 and log2(e)


def row_data(made, key):
    d = data(made, ROWS[key][0])
    return {field: d[f"{key}_{field}"] for field in ("x", "pa", "exact", "approx")}


@pytest.mark.parametrize("key", ROWS)
def test_saved_values_are_the_pa_function_within_its_bound(made, key):
    _, pa_fn, true_fn, _, value_err, _ = ROWS[key]
    row = row_data(made, key)
    x = row["x"]
    np.testing.assert_array_equal(row["pa"], pa_fn(x))
    if value_err is not None:
        rel = row["pa"] / true_fn(x.astype(np.float64)) - 1
        assert value_err[0] - TINY <= rel.min() and rel.max() <= value_err[1] + TINY
    if key == "log2":  # SPEC: absolute error in [-0.0861, 0]
        err = row["pa"] - np.log2(x.astype(np.float64))
        assert -0.0861 - TINY <= err.min() and err.max() <= TINY


# each row as the chain of primitives its exact derivative goes through (SPEC section 4);
# x ⊙ x is one stage: both operands move, its slope is the sum of the two partials
LOG2E = np.float32(np.log2(np.e))
CHAINS = {
    "scale": [lambda x: ops.pam(1.5, x)],
    "reciprocal": [lambda x: ops.pad(1.5, x)],
    "divide": [lambda x: ops.pad(x, 1.5)],
    "square": [lambda x: ops.pam(x, x)],
    "sqrt": [ops.pasqrt],
    "exp2": [ops.paexp2],
    "exp": [lambda x: ops.pam(LOG2E, x), ops.paexp2],
    "log2": [ops.palog2],
    "log": [ops.palog2, lambda u: ops.pad(u, LOG2E)],
}


def one_sided_slopes(fn, x):
    """fn's slope just right and just left of each x, NaN on a side with a breakpoint.

    A side counts where the difference quotients over [x, x ± h] and [x ± h, x ± 2h]
    agree: the function is affine there (slopes of distinct pieces differ by 2x or more).
    """
    h = np.float32(2**-12) * np.maximum(np.abs(x), 1)
    sides = []
    for step in (h, -h):
        x1 = x + step
        x2 = x1 + step
        f0, f1, f2 = (fn(t).astype(np.float64) for t in (x, x1, x2))
        near = (f1 - f0) / (x1.astype(np.float64) - x)
        far = (f2 - f1) / (x2.astype(np.float64) - x1)
        sides.append(np.where(np.isclose(near, far, rtol=1e-2), near, np.nan))
    return sides


@pytest.mark.parametrize("key", ROWS)
def test_exact_derivative_is_a_power_of_two_and_a_chain_of_slopes(made, key):
    row = row_data(made, key)
    x, exact = row["x"], row["exact"]
    fraction, _ = np.frexp(np.abs(exact))
    assert np.all(fraction == 0.5)  # nonzero powers of two

    # exact = product over the chain of each stage's slope at its input, measured by
    # finite differences. At a breakpoint either side of a stage is accepted: the SPEC's
    # "segment to the right" and its table's k (the forward op's own carry) differ there
    # for negative operands and PAD's divisor, and at ln's x = 0.25 (u = palog2 = -2) the
    # chain mixes palog2's right piece with the PAD's left one (see requests.md).
    candidates = [np.ones_like(x, dtype=np.float64)]
    value = x
    for stage in CHAINS[key]:
        right, left = one_sided_slopes(stage, value)
        candidates = [c * side for c in candidates for side in (right, left)]
        value = stage(value)
    candidates = np.array(candidates)
    measured = np.any(np.isfinite(candidates), axis=0)
    assert np.mean(np.all(np.isfinite(candidates), axis=0)) > 0.9  # most x: no breakpoint
    matches = np.any(np.isclose(candidates, exact, rtol=1e-2), axis=0)
    assert np.all(matches | ~measured)


@pytest.mark.parametrize("key", ROWS)
def test_approx_derivative_within_the_composed_bound(made, key):
    _, _, _, dtrue_fn, _, bound = ROWS[key]
    row = row_data(made, key)
    x = row["x"].astype(np.float64)
    rel = row["approx"] / dtrue_fn(x) - 1
    low, high = bound(x)
    assert np.all(low - TINY <= rel) and np.all(rel <= high + TINY)


def test_dot_product_offset_zeroes_the_mean_bias_and_shrinks_the_error(made):
    d = data(made, "fig_dot_product")
    alpha = float(d["alpha"])
    # mean relative error of (x1 ⊙ x2) ⊙ alpha over random uniform mantissas, from the
    # float64 SPEC formula; zero at alpha, of opposite signs 0.002 either side
    rng = np.random.default_rng(1)
    x1, x2 = 1 + rng.random((2, 200_000))
    pam = pam_reference(x1, x2)

    def bias(a):
        return np.mean(pam_reference(pam, a) / (x1 * x2)) - 1

    assert abs(bias(alpha)) < 2e-4
    assert bias(alpha - 0.002) < 0 < bias(alpha + 0.002)
    assert np.all(np.abs(d["bias_alpha"]) < np.abs(d["bias_plain"]))
    assert np.all(d["rms_alpha"] < d["rms_plain"])
    assert np.all(d["bias_plain"] < 0)
