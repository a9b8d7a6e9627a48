"""A two-layer MLP trained on scikit-learn's digits (real 8x8 images) in each mode drives the loss down."""
import numpy as np
import pytest

from pafree import F, Tensor, config, ops

sklearn_datasets = pytest.importorskip("sklearn.datasets")

MODES = {
    "standard": dict(config.PRESETS["standard"]),
    "pa-approx": dict.fromkeys(["matmul", "norm", "softmax", "loss", "other"], "pa-approx"),
    "pa-exact": dict.fromkeys(["matmul", "norm", "softmax", "loss", "other"], "pa-exact"),
    "pa": dict(config.PRESETS["pa"]),
}
LEARNING_RATE = np.float32(0.5)          # a power of two: the PA update g ⊙ lr is exact either way


def digits():
    data = sklearn_datasets.load_digits()
    x = (data.data / 16.0).astype(np.float32)          # test-side data preparation
    return x[:512], data.target[:512]


@pytest.mark.parametrize("mode", MODES)
def test_two_layer_mlp_learns_digits(mode):
    x, y = digits()
    init = np.random.default_rng(0)
    w1 = Tensor(init.normal(0, 0.125, (64, 32)), requires_grad=True)
    b1 = Tensor(np.zeros(32), requires_grad=True)
    w2 = Tensor(init.normal(0, 0.125, (32, 10)), requires_grad=True)
    b2 = Tensor(np.zeros(10), requires_grad=True)
    params = [w1, b1, w2, b2]
    losses = []
    with config.mode(**MODES[mode]):
        for step in range(30):
            hidden = F.relu(F.matmul(x, w1) + b1)
            loss = F.cross_entropy(F.matmul(hidden, w2) + b2, y)
            loss.backward()
            losses.append(loss.item())
            for p in params:
                step_ = ops.pam(p.grad, LEARNING_RATE) if mode != "standard" else p.grad * LEARNING_RATE
                p.data = p.data - step_
                p.grad = None
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
