"""F.conv2d: bit-exact against a direct loop reference, derivatives, float baseline, errors.

The reference below never unfolds or multiplies matrices: it walks the kernel
taps in the documented order (docs/autograd.md, "Convolution") and adds
elementwise PAM products (pafree.ops.pam / pam_slope, each checked against
SPEC elsewhere) into float32 accumulators that start at +0.0.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import pafree.functional as F
from pafree import config
from pafree.autograd.tensor import Tensor
from pafree.ops import pam, pam_slope
from test_gemm import assert_same_bits as same_bits_or_nan, data as gemm_data

F32 = np.float32

# (N, C, H, W), (O, kh, kw), stride, padding, groups
CASES = {
    "3x3 pad 1": ((2, 3, 5, 6), (4, 3, 3), 1, 1, 1),
    "1x1": ((2, 4, 3, 3), (5, 1, 1), 1, 0, 1),
    "stride 2 pad 1": ((1, 2, 7, 6), (3, 3, 3), 2, 1, 1),
    "non-square": ((2, 2, 6, 5), (3, 2, 3), (2, 1), (0, 1), 1),
    "groups 2": ((1, 4, 5, 5), (6, 3, 3), 1, 1, 2),
    "depthwise": ((2, 3, 6, 6), (3, 3, 3), 1, 1, 3),
    "depthwise x2 stride 3": ((1, 2, 7, 8), (4, 3, 2), 3, 2, 2),
    "stride > kernel": ((1, 2, 7, 7), (2, 2, 2), 3, 0, 1),
    "kernel = padded input": ((1, 1, 3, 2), (2, 5, 4), 1, 1, 1),
}


def pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def make(case, seed=0):
    (n, c, h, w), (o, kh, kw), stride, padding, groups = CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(F32)
    weight = rng.standard_normal((o, c // groups, kh, kw)).astype(F32)
    bias = rng.standard_normal(o).astype(F32)
    return x, weight, bias, dict(stride=stride, padding=padding, groups=groups)


def taps(x, weight, stride, padding, groups):
    """For each output channel o and tap (c, di, dj) in increasing order: the weight
    w[o, c, di, dj] and the (N, OH, OW) view of the padded input it multiplies."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o_total, cg, kh, kw = weight.shape
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    og = o_total // groups
    for o in range(o_total):
        yield o, [(weight[o, c, di, dj], (o // og) * cg + c, di, dj,
                   xp[:, (o // og) * cg + c, di:di + sh * (oh - 1) + 1:sh, dj:dj + sw * (ow - 1) + 1:sw])
                  for c in range(cg) for di in range(kh) for dj in range(kw)]


def reference(x, weight, bias, g, kind, stride, padding, groups):
    """(y, dx, dw, dbias) of sum(y ⊙ g) for kind 'exact' or 'approx', in the documented order."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    n, c, h, w = x.shape
    o_total, cg, kh, kw = weight.shape
    y = np.zeros(g.shape, F32)
    dw = np.zeros(weight.shape, F32)
    # dp[n, c, di, dj, i, j]: the gradient of one patch entry, summed over o increasing
    dp = np.zeros((n, c, kh, kw) + g.shape[2:], F32)
    for o, terms in taps(x, weight, stride, padding, groups):
        acc = np.zeros((n,) + g.shape[2:], F32)
        for wk, ch, di, dj, xs in terms:
            acc = acc + pam(wk, xs)
            if kind == "approx":
                dp[:, ch, di, dj] = dp[:, ch, di, dj] + pam(wk, g[:, o])
                per_n = [pam(g[i, o], xs[i]) for i in range(n)]
            else:
                dp[:, ch, di, dj] = dp[:, ch, di, dj] + pam(g[:, o], pam_slope(xs, wk))
                per_n = [pam(g[i, o], pam_slope(wk, xs[i])) for i in range(n)]
            total = F32(0)
            for terms_n in per_n:                    # over l increasing, then over n increasing
                s = F32(0)
                for t in terms_n.reshape(-1):
                    s = F32(s + t)
                total = F32(total + s)
            dw[o, ch - (o // (o_total // groups)) * cg, di, dj] = total
        y[:, o] = acc
    y = y + bias[None, :, None, None]
    oh, ow = g.shape[2:]
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), F32)
    for di in range(kh):                     # each input element: its taps in increasing (di, dj)
        for dj in range(kw):
            dxp[:, :, di:di + sh * (oh - 1) + 1:sh, dj:dj + sw * (ow - 1) + 1:sw] += dp[:, :, di, dj]
    dx = dxp[:, :, ph:ph + h, pw:pw + w]
    return y, dx, dw, np.sum(g, axis=(0, 2, 3), dtype=F32)


def run(x, weight, bias, g, mode, **params):
    X, W, B = (Tensor(a, requires_grad=True) for a in (x, weight, bias))
    with config.mode(matmul=mode):
        y = F.conv2d(X, W, B, **params)
        y.backward(g)
    return y.data, X.grad, W.grad, B.grad


def assert_same_bits(a, b, name=""):
    assert a.shape == b.shape and a.dtype == b.dtype == F32, name
    np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32), err_msg=name)


@pytest.mark.parametrize("kind", ["exact", "approx"])
@pytest.mark.parametrize("case", CASES)
def test_pa_conv_bit_exact_against_loop_reference(case, kind):
    x, weight, bias, params = make(case)
    g = np.random.default_rng(1).standard_normal(
        F.conv2d(x, weight, **params).shape).astype(F32)
    got = run(x, weight, bias, g, "pa-" + kind, **params)
    expect = reference(x, weight, bias, g, kind, **params)
    for name, a, b in zip(["y", "dx", "dw", "dbias"], got, expect):
        assert_same_bits(a, b, name)


@given(st.data())
def test_pa_conv_bit_exact_on_random_geometries_and_special_values(draw):
    """Any stride, padding, groups and size, on data with zeros, subnormals, underflow,
    overflow, inf and NaN (test_gemm's kinds); NaN positions must agree, not their bits."""
    pick = lambda lo, hi: draw.draw(st.integers(lo, hi))        # noqa: E731
    groups, kh, kw, ph, pw = pick(1, 3), pick(1, 3), pick(1, 3), pick(0, 2), pick(0, 2)
    shape = (pick(1, 2), groups * pick(1, 2), pick(max(1, kh - 2 * ph), 6), pick(max(1, kw - 2 * pw), 6))
    params = dict(stride=(pick(1, 3), pick(1, 3)), padding=(ph, pw), groups=groups)
    kind = draw.draw(st.sampled_from(["fast", "masked", "edge"]))
    rng = np.random.default_rng(pick(0, 2 ** 32 - 1))
    x = gemm_data(shape, kind, rng)
    weight = gemm_data((groups * pick(1, 2), shape[1] // groups, kh, kw), kind, rng)
    bias = gemm_data(weight.shape[:1], kind, rng)
    g = gemm_data(F.conv2d(x, weight, **params, derivative="approx").shape, kind, rng)
    derivative = draw.draw(st.sampled_from(["exact", "approx"]))
    with np.errstate(all="ignore"):
        got = run(x, weight, bias, g, "pa-" + derivative, **params)
        expect = reference(x, weight, bias, g, derivative, **params)
    for a, b in zip(got, expect):
        same_bits_or_nan(a, np.ascontiguousarray(b))


def float_conv(x, weight, stride, padding, groups):
    """float64 convolution by einsum over the padded input's patches."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, cg, kh, kw = weight.shape
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw]          # (N, C, OH, OW, kh, kw)
    win = win.reshape(x.shape[0], groups, cg, oh, ow, kh, kw)
    wg = weight.astype(np.float64).reshape(groups, o // groups, cg, kh, kw)
    return np.einsum("ngchwij,gocij->ngohw", win, wg).reshape(x.shape[0], o, oh, ow)


def float_grads(x, weight, g, params):
    """float64 dx, dw of sum(conv ⊙ g): conv is linear, so its derivative is conv itself
    (evaluated on unit vectors, one einsum each)."""
    dx = np.zeros(x.shape)
    dw = np.zeros(weight.shape)
    for idx in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[idx] = 1
        dx[idx] = np.sum(float_conv(e, weight, **params) * g)
    for idx in np.ndindex(weight.shape):
        e = np.zeros(weight.shape)
        e[idx] = 1
        dw[idx] = np.sum(float_conv(x, e, **params) * g)
    return dx, dw


@pytest.mark.parametrize("case", ["3x3 pad 1", "stride 2 pad 1", "non-square", "groups 2", "depthwise"])
def test_standard_conv_and_gradients_match_float_reference(case):
    x, weight, bias, params = make(case)
    y = float_conv(x, weight, **params) + bias[None, :, None, None]
    g = np.random.default_rng(2).standard_normal(y.shape).astype(F32)
    got_y, dx, dw, db = run(x, weight, bias, g, "standard", **params)
    expect_dx, expect_dw = float_grads(x, weight, g, params)
    np.testing.assert_allclose(got_y, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, expect_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, expect_dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, g.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["3x3 pad 1", "stride 2 pad 1", "groups 2", "depthwise x2 stride 3"])
def test_approx_gradients_within_pam_bound_of_float_derivative(case):
    """Each term of an approx gradient is one PAM of the float term's factors: relative
    error in [-1/9, 0], so |approx - float| <= 1/9 of the same sum over |terms| (plus rounding)."""
    x, weight, bias, params = make(case)
    g = np.random.default_rng(3).standard_normal(F.conv2d(x, weight, **params).shape).astype(F32)
    _, dx, dw, _ = run(x, weight, bias, g, "pa-approx", **params)
    expect_dx, expect_dw = float_grads(x, weight, g, params)
    bound_dx, bound_dw = float_grads(np.abs(x), np.abs(weight), np.abs(g), params)
    assert np.all(np.abs(dx - expect_dx) <= bound_dx / 9 + 1e-5 * bound_dx + 1e-30)
    assert np.all(np.abs(dw - expect_dw) <= bound_dw / 9 + 1e-5 * bound_dw + 1e-30)
    assert np.abs(dx - expect_dx).max() > 0          # the bound is not met trivially


def dyadic(rng, shape):
    """±(1 + m/8) 2**e, e in {-1, 0, 1}: PAM's mantissa sums are multiples of 1/8, so a step
    of 2**-12 relative never crosses a carry, and every sum below is exact in float32."""
    m = rng.integers(0, 8, shape)
    e = rng.integers(-1, 2, shape)
    sign = rng.choice([-1.0, 1.0], shape)
    return (sign * (1 + m / 8) * np.exp2(e)).astype(F32)


@pytest.mark.parametrize("case", ["3x3 pad 1", "stride 2 pad 1", "depthwise", "non-square"])
def test_exact_gradients_are_finite_difference_slopes(case):
    _, _, _, params = make(case)
    rng = np.random.default_rng(4)
    (n, c, h, w), (o, kh, kw), _, _, groups = CASES[case]
    x, weight = dyadic(rng, (n, c, h, w)), dyadic(rng, (o, c // groups, kh, kw))
    bias = np.zeros(o, F32)

    def total(xv, wv):
        with config.mode(matmul="pa-exact"):
            return F.conv2d(xv, wv, **params).data.astype(np.float64).sum()

    y = F.conv2d(x, weight, **params)
    _, dx, dw, _ = run(x, weight, bias, np.ones(y.shape, F32), "pa-exact", **params)
    base = total(x, weight)
    for arr, grad, fn in ((x, dx, lambda v: total(v, weight)), (weight, dw, lambda v: total(x, v))):
        for idx in np.ndindex(arr.shape):
            step = np.exp2(np.floor(np.log2(abs(float(arr[idx]))))) * 2.0 ** -12 * np.sign(arr[idx])
            moved = arr.copy()
            moved[idx] = F32(arr[idx] + step)
            assert (fn(moved) - base) / step == grad[idx], idx


def test_conv2d_modes_and_derivative_override():
    x, weight, bias, params = make("3x3 pad 1")
    with config.mode(matmul="standard"):
        forced = F.conv2d(x, weight, bias, derivative="approx", **params).data
    with config.mode(matmul="pa-approx"):
        assert_same_bits(forced, F.conv2d(x, weight, bias, **params).data)


def test_unfold_is_the_patch_matrix():
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 4)).astype(F32)
    cols = F.unfold(x, (3, 2), stride=(2, 1), padding=1).data
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 2), axis=(2, 3))[:, :, ::2]
    expect = win.transpose(0, 1, 4, 5, 2, 3).reshape(2, 3 * 3 * 2, -1)
    assert_same_bits(cols, np.ascontiguousarray(expect))


@pytest.mark.parametrize("args,kwargs,error,match", [
    (((2, 3, 5, 5), (4, 3, 3, 3)), dict(groups=2), ValueError, "groups=2 must divide"),
    (((2, 4, 5, 5), (4, 4, 3, 3)), dict(groups=2), ValueError, "input channels per group"),
    (((2, 3, 5), (4, 3, 3, 3)), {}, ValueError, "input must be 4-D"),
    (((2, 3, 5, 5), (4, 3, 3)), {}, ValueError, "weight must be 4-D"),
    (((2, 3, 2, 5), (4, 3, 3, 3)), {}, ValueError, "kernel height 3 is larger than the padded input height 2"),
    (((2, 3, 5, 5), (4, 3, 3, 3)), dict(stride=0), ValueError, "stride must be at least 1"),
    (((2, 3, 5, 5), (4, 3, 3, 3)), dict(padding=-1), ValueError, "padding must be at least 0"),
    (((2, 3, 5, 5), (4, 3, 3, 3)), dict(stride=1.5), TypeError, "stride must be an int"),
    (((2, 3, 5, 5), (4, 3, 3, 3)), dict(padding=(1, 1, 1)), TypeError, "padding must be an int or a pair"),
    (((2, 3, 5, 5), (4, 3, 3, 3)), dict(groups=0), ValueError, "groups must be a positive int"),
    (((2, 3, 5, 5), (4, 3, 3, 3)), dict(bias=np.zeros(3, F32)), ValueError, r"bias must have shape \(4,\)"),
])
def test_conv2d_errors_name_the_problem(args, kwargs, error, match):
    x, weight = (np.zeros(s, F32) for s in args)
    with pytest.raises(error, match=match):
        F.conv2d(x, weight, **kwargs)


def test_conv2d_rejects_integer_tensors():
    with pytest.raises(TypeError, match="input must be a float tensor"):
        F.conv2d(np.zeros((1, 1, 3, 3), np.int32), np.zeros((1, 1, 3, 3), F32))
    with pytest.raises(TypeError, match="weight must be a float tensor"):
        F.conv2d(np.zeros((1, 1, 3, 3), F32), np.zeros((1, 1, 3, 3), bool))


@pytest.mark.parametrize("kind", ["exact", "approx"])
def test_pa_conv_step_passes_the_audit(kind):
    """Forward and backward of a grouped, strided conv under all the audit's layers: no
    float multiply anywhere, and the patch kernels among those scanned."""
    from pafree.audit.step import Audit
    x, weight, bias, params = make("depthwise x2 stride 3")
    g = np.ones(F.conv2d(x, weight, **params).shape, F32)

    def step(x, weight, bias, g):
        X, W, B = (Tensor(a, requires_grad=True) for a in (x, weight, bias))
        F.conv2d(X, W, B, **params).backward(g)

    with config.mode("pa", matmul="pa-" + kind), Audit() as audit:
        audit.rehearse(step, *(a.copy() for a in (x, weight, bias, g)))
        audit.run(step, x, weight, bias, g)
    report = audit.report()
    assert report.ok, report.findings
    assert {"unfold", "fold", "pam_matmul" if kind == "approx" else "pam_matmul_exact_grads"} <= set(
        report.primitives) | {k.name for k in report.kernels}
    assert {"unfold", "fold"} <= {k.name for k in report.kernels}
