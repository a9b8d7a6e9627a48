"""Forward and backward through pafree.Tensor with the data on the device equal the CPU run bit for bit.

The registry's kernels register pafree.ops.cuda's host functions as their
"cuda" backend at the first device array they meet; from then on every op on
device tensors runs on the device.

Bit-exact here because every reduction is sequential on both backends at
these sizes: numpy's np.sum adds a contiguous axis of 8 or more elements in
an unrolled pairwise order, the device kernel always in index order (then
the two agree within the summation-order bound, see test_kernels.py).
"""
import numpy as np
import pytest

from pafree import Tensor, config
from pafree import functional as F
from pafree.ops import cuda as gpu


def classifier_grads(arrays, targets, device):
    """Loss and parameter gradients of a tiny layer-norm / GELU / cross-entropy classifier."""
    x = Tensor(arrays["x"]).to(device)
    params = {name: Tensor(arrays[name], requires_grad=True).to(device) for name in ("w1", "b1", "w2")}
    h = F.gelu(F.add(F.matmul(F.layer_norm(x, None, None), params["w1"]), params["b1"]))
    loss = F.cross_entropy(F.matmul(h, params["w2"]), targets, label_smoothing=0.1)
    loss.backward()
    assert loss.device == device
    assert all(gpu.is_device_array(p.grad) == (device == "cuda") for p in params.values())
    return loss.to("cpu").data, {name: Tensor(p.grad).to("cpu").data for name, p in params.items()}


@pytest.mark.parametrize("overrides", [{}, {"matmul": "pa-exact"}, {"softmax": "pa-exact", "norm": "pa-exact"}])
def test_classifier_backward_on_device_equals_cpu(overrides):
    rng = np.random.default_rng(31)
    arrays = {"x": rng.standard_normal((4, 6)), "w1": rng.standard_normal((6, 7)) * 0.5,
              "b1": rng.standard_normal(7) * 0.1, "w2": rng.standard_normal((7, 3)) * 0.5}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    targets = np.array([0, 2, 1, 2])
    with config.mode("pa", **overrides):
        want_loss, want = classifier_grads(arrays, targets, "cpu")
        got_loss, got = classifier_grads(arrays, targets, "cuda")
    assert np.isfinite(want_loss).all() and all(np.any(g != 0) for g in want.values())
    np.testing.assert_array_equal(np.asarray(got_loss, np.float32).view(np.int32),
                                  np.asarray(want_loss, np.float32).view(np.int32))
    for name in want:
        np.testing.assert_array_equal(got[name].view(np.int32), want[name].view(np.int32), err_msg=name)
