"""F.conv2d with the data on the device equals the CPU result bit for bit (same lowering:
unfold, the PAM GEMM, fold). Small cases: the simulator is slow."""
import numpy as np
import pytest

from pafree import Tensor, config
from pafree import functional as F
from pafree.ops import cuda as gpu

CASES = {   # (N, C, H, W), (O, kh, kw), stride, padding, groups
    "3x3 pad 1": ((2, 2, 4, 3), (3, 3, 3), 1, 1, 1),
    "stride 2 non-square": ((1, 2, 5, 4), (2, 3, 2), (2, 1), (1, 0), 1),
    "depthwise": ((2, 2, 3, 3), (4, 2, 2), 1, 1, 2),
}


def conv_grads(x, w, b, g, params, device):
    X, W, B = (Tensor(a, requires_grad=True).to(device) for a in (x, w, b))
    y = F.conv2d(X, W, B, **params)
    assert y.device == device
    y.backward(g if device == "cpu" else gpu.to_device(g))
    return [Tensor(t).to("cpu").data for t in (y.data, X.grad, W.grad, B.grad)]


@pytest.mark.parametrize("mode", ["pa-exact", "pa-approx"])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_on_device_equals_cpu(case, mode):
    (n, c, h, w), (o, kh, kw), stride, padding, groups = CASES[case]
    params = dict(stride=stride, padding=padding, groups=groups)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((o, c // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    g = rng.standard_normal(F.conv2d(x, weight, **params).shape).astype(np.float32)
    with config.mode(matmul=mode):
        want = conv_grads(x, weight, bias, g, params, "cpu")
        got = conv_grads(x, weight, bias, g, params, "cuda")
    for name, a, b in zip(["y", "dx", "dw"], got, want):
        np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32), err_msg=name)
    # the bias gradient is the autograd's sum over (N, OH, OW): numpy adds 8 or more pairwise,
    # the device in index order (docs/cuda.md), so equal up to summation-order rounding
    np.testing.assert_allclose(got[3], want[3], rtol=1e-6, atol=1e-6)


def test_unfold_and_fold_on_device_equal_cpu():
    from pafree.ops import patches
    x = np.random.default_rng(8).standard_normal((2, 3, 5, 4)).astype(np.float32)
    geometry = ((3, 2), (2, 1), (1, 0))
    cols = patches.unfold(x, *geometry)
    np.testing.assert_array_equal(gpu.unfold(x, *geometry).copy_to_host().view(np.int32), cols.view(np.int32))
    np.testing.assert_array_equal(gpu.fold(cols, x.shape, *geometry).copy_to_host().view(np.int32),
                                  patches.fold(cols, x.shape, *geometry).view(np.int32))
