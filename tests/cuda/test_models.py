"""Forward and backward of each task's model with the weights on the device, against the CPU run.

Slow on the simulator (about a minute per task under load): marked slow, run with
    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q -m slow tests/cuda/test_models.py
The gradients agree within summation order, not bit for bit: numpy's np.sum
adds a contiguous axis of 8 or more elements pairwise (layer norm and
softmax over d_model), the device in index order.
"""
import numpy as np
import pytest

from pafree import config
from pafree.run import build
from pafree.ops import cuda as gpu

TINY = {"digits": {"n_layers": 1}, "numbers": {"n_enc_layers": 1, "n_dec_layers": 1},
        "addition": {"n_layers": 1}}


def model_grads(task, device):
    run = build(task, "pa", seed=0, d_model=8, n_heads=2, d_ff=16, batch_size=2, dropout=0.0,
                  **TINY[task])
    params = run.model.parameters()
    run.model.to(device)                      # the weights move in place
    with config.mode(**run.modes):
        run.model.train()
        run.task.loss(run.model, run.batch(0), run.hparams["label_smoothing"]).backward()
    assert all(gpu.is_device_array(p.grad) == (device == "cuda") for p in params)
    return [p.grad.copy_to_host() if device == "cuda" else p.grad for p in params]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TINY))
def test_model_backward_on_device_matches_cpu(task):
    want = model_grads(task, "cpu")
    got = model_grads(task, "cuda")
    for g, w in zip(got, want):
        scale = np.max(np.abs(w))
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)
