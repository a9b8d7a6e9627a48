"""A whole PA training step built from device kernels only, against the same step on the CPU.

Not yet through pafree.Tensor (Tensor.to("cuda") is not wired): the step of a
tiny linear model (forward, squared-error gradient, approx backward, SGD update)
is written once over a table of array functions and run with the CUDA kernels
(device arrays in, device arrays out, no host copy in between) and with the
CPU ones. Both must give the same bits.
"""
from types import SimpleNamespace

import numpy as np

import pafree.ops as ops
from pafree.ops import cuda as gpu


def sequential_sum(x, axis):
    return np.add.accumulate(x, axis=axis, dtype=np.float32).take(-1, axis=axis)


CPU = SimpleNamespace(pam=ops.pam, pam_matmul=ops.pam_matmul, add=np.add, sub=np.subtract,
                      transpose=np.transpose, reduce_sum=sequential_sum)


def linear_step(k, x, t, w, b, scale, lr):
    """One SGD step of y = x W + b on mean squared error, every product a PAM."""
    y = k.add(k.pam_matmul(x, w), b)
    g_y = k.pam(k.sub(y, t), scale)                   # d loss / dy = (y - t) ⊙ (2 ⊘ n)
    g_w = k.pam_matmul(k.transpose(x), g_y)           # approx derivative of the PAM matmul
    g_b = k.reduce_sum(g_y, 0)
    return k.sub(w, k.pam(lr, g_w)), k.sub(b, k.pam(lr, g_b))


def test_linear_step_on_device_equals_cpu_step():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    t = rng.standard_normal((6, 3)).astype(np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    scale = ops.pad(np.float32(2), np.float32(t.size))
    lr = np.float32(0.125)
    want_w, want_b = linear_step(CPU, x, t, w, b, scale, lr)

    dev = [gpu.to_device(v) for v in (x, t, w, b, scale, lr)]
    got_w, got_b = linear_step(gpu, *dev)
    assert gpu.is_device_array(got_w) and gpu.is_device_array(got_b)
    np.testing.assert_array_equal(got_w.copy_to_host().view(np.int32), want_w.view(np.int32))
    np.testing.assert_array_equal(got_b.copy_to_host().view(np.int32), want_b.view(np.int32))
    assert not np.array_equal(want_w, w)              # the step did move the weights
