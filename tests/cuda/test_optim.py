"""The optimizer step with parameters, gradients and state on the device, against the CPU.

PA AdamW runs pafree.ops.adamw's element function in a CUDA kernel, SGD and
clipping run the registry's primitives on the device: parameters and state
must come out bit for bit as on the CPU. The one float sum (the squared norm
in clipping) adds in index order on the device; the arrays here are shorter
than 8 elements, where numpy's np.sum adds in index order too, or are
compared with a sequential reference.
"""
import numpy as np
import pytest

from pafree import ops, optim
from pafree.autograd import registry
from pafree.ops import cuda as gpu
from sequential import sequential_sum

SHAPES = ((2, 3), (5,), (1, 3, 2))     # under 8 elements: np.sum adds in index order


class Param:
    def __init__(self, data):
        self.data = data
        self.grad = None


def params_on(device, seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=s).astype(np.float32) for s in shapes]
    if device == "cuda":
        registry.use_cuda()
        arrays = [gpu.to_device(a) for a in arrays]
    return [Param(a) for a in arrays]


def host(x):
    return x.copy_to_host() if gpu.is_device_array(x) else np.asarray(x)


def run_steps(make, device, steps=3, clip=None):
    """A few optimizer steps (gradients drawn on the host, moved like the parameters)."""
    params = params_on(device, 0)
    opt = make(params)
    rng = np.random.default_rng(1)
    norms = []
    for _ in range(steps):
        for p in params:
            g = rng.normal(size=tuple(p.data.shape)).astype(np.float32)
            p.grad = gpu.to_device(g) if device == "cuda" else g
        if clip is not None:
            norms.append(optim.clip_grad_norm(params, clip, mode="pa"))
        opt.step()
    return params, opt, norms


def schedule():
    return optim.make_schedule("cosine", 0.01, 10, 2, mode="pa")


OPTIMIZERS = {
    "adamw": lambda ps: optim.AdamW(ps, schedule(), betas=(0.9, 0.98), weight_decay=0.05, mode="pa"),
    "sgd": lambda ps: optim.SGD(ps, schedule(), momentum=0.9, weight_decay=0.01, mode="pa"),
}


def assert_same_bits(got, want):
    got, want = host(got), host(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes(), np.max(np.abs(got - want))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pa_step_on_device_equals_cpu(name):
    want, want_opt, want_norms = run_steps(OPTIMIZERS[name], "cpu", clip=1.0)
    got, got_opt, got_norms = run_steps(OPTIMIZERS[name], "cuda", clip=1.0)
    assert all(gpu.is_device_array(p.data) for p in got)
    assert all(gpu.is_device_array(v) for k, v in got_opt.state.items() if "." in k)
    assert got_norms == want_norms and max(want_norms) > 1.0         # clipping did scale
    for g, w in zip(got, want):
        assert_same_bits(g.data, w.data)
    got_state, want_state = got_opt.state_dict(), want_opt.state_dict()
    assert all(isinstance(v, np.ndarray) for v in got_state.values())  # host copies
    assert set(got_state) == set(want_state)
    for key in want_state:
        assert_same_bits(got_state[key], want_state[key])


def test_device_state_resumes_on_the_cpu():
    """A device run's state_dict continues on the CPU exactly as the device run does."""
    make = OPTIMIZERS["adamw"]
    dev, dev_opt, _ = run_steps(make, "cuda", steps=2)
    cpu = [Param(host(p.data).copy()) for p in dev]
    cpu_opt = make(cpu)
    cpu_opt.load_state_dict(dev_opt.state_dict())
    back = params_on("cuda", 5)                 # other values, overwritten by the state below
    back_opt = make(back)
    back_opt.load_state_dict(dev_opt.state_dict())
    for p, q in zip(back, cpu):
        p.data.copy_to_device(q.data)
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=tuple(p.data.shape)).astype(np.float32) for p in dev]
    for ps, opt in ((dev, dev_opt), (cpu, cpu_opt), (back, back_opt)):
        for p, g in zip(ps, grads):
            p.grad = g.copy()
        opt.step()
    for a, b, c in zip(dev, cpu, back):
        assert_same_bits(a.data, b.data)
        assert_same_bits(c.data, b.data)


def sequential_square_sum(arrays):
    """Sum of PAM squares, each array summed in the device's order, then in array order."""
    total = np.float32(0)
    for a in arrays:
        total = total + sequential_sum(ops.pam(a, a))
    return total


def test_clip_norm_sums_in_index_order_on_device():
    shapes = ((40, 3), (17,))              # long enough for numpy's pairwise order on the CPU
    params = params_on("cuda", 3, shapes)
    for p in params:
        p.grad = gpu.to_device(np.random.default_rng(4).normal(size=tuple(p.data.shape)).astype(np.float32))
    grads = [host(p.grad) for p in params]
    norm = optim.clip_grad_norm(params, 1e6, mode="pa")
    assert norm == float(ops.pasqrt(sequential_square_sum(grads)))
    pairwise = float(ops.pasqrt(sum(np.sum(ops.pam(g, g)) for g in grads)))
    assert norm == pytest.approx(pairwise, rel=1e-6)      # float32 summation-order rounding


def test_float_baseline_refuses_device_arrays():
    params = params_on("cuda", 0)
    with pytest.raises(ValueError, match="CPU only"):
        optim.AdamW(params, 0.01, mode="standard")
    for p in params:
        p.grad = p.data
    with pytest.raises(ValueError, match="CPU only"):
        optim.clip_grad_norm(params, 1.0, mode="standard")
