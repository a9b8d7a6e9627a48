"""Complete PA training steps of a tiny model of each task on the device, against the CPU.

``Run.train_step`` is the real step: forward, loss, backward, gradient clipping,
PA AdamW update and learning-rate schedule. With the weights on the device every
op runs a device kernel; the step must give the CPU's losses, parameters and
optimizer state bit for bit once both backends add in the same order: for the comparison the CPU's
``sum`` and ``scatter_add`` primitives are replaced by ones that add in the
device's order (index order; np.add.at). With the CPU's own kernels (np.sum
adds long contiguous axes pairwise, the embedding gradient's scatter_add sums
segments with np.add.reduceat) the two differ by float32 summation-order
rounding only: every weight is within a hundredth of a learning rate of the CPU's.
"""
import sys

import numpy as np
import pytest
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

from pafree import optim
from pafree import run as T
from pafree.autograd import registry
from pafree.ops import cuda as gpu
from sequential import sequential_sum

# tiny models and short sequences: the simulator runs every CUDA thread as a Python thread
TINY = {"digits": {"n_layers": 1}, "numbers": {"n_enc_layers": 1, "n_dec_layers": 1},
        "addition": {"n_layers": 1, "train_digits": 2, "eval_digits": 2}}
STEPS = 1       # several steps of the device optimizer: test_optim.py


# What a real numba DeviceNDArray offers (the simulator's arrays forward everything else to
# numpy, which would hide code that works on the simulator only).
DEVICE_ARRAY_API = {
    "T", "alloc_size", "as_cuda_arg", "bind", "copy_to_device", "copy_to_host",
    "device_ctypes_pointer", "dtype", "flags", "getitem", "gpu_data", "is_c_contiguous",
    "is_f_contiguous", "nbytes", "ndim", "ravel", "reshape", "setitem", "shape", "size",
    "split", "squeeze", "stream", "strides", "transpose", "view"}


@pytest.fixture
def device_array_use(monkeypatch):
    """Records what pafree's code does with device arrays: attributes a real device array
    lacks, and the device-to-host copies."""
    used = {"foreign": set(), "copies": 0}
    forward, copy = FakeCUDAArray.__getattr__, FakeCUDAArray.copy_to_host

    def getattr_(self, name):
        if name not in DEVICE_ARRAY_API and "/pafree/" in sys._getframe(1).f_code.co_filename:
            used["foreign"].add(name)
        return forward(self, name)

    def copy_to_host(self, *args, **kwargs):
        if "/pafree/" in sys._getframe(1).f_code.co_filename:
            used["copies"] += 1
        return copy(self, *args, **kwargs)
    monkeypatch.setattr(FakeCUDAArray, "__getattr__", getattr_)
    monkeypatch.setattr(FakeCUDAArray, "copy_to_host", copy_to_host)
    return used


def scatter_add_in_index_order(out, idx, values):
    np.add.at(out, idx, values)


def tiny_run(task, device):
    return T.build(task, "pa", seed=0, device=device, d_model=4, n_heads=2, d_ff=8,
                   batch_size=2, dropout=0.1, clip=0.05, **TINY[task])


def train(task, device, monkeypatch, used=None):
    """Losses, clipping norms, parameters and optimizer state (host copies) after STEPS steps;
    ``used``: the device_array_use record, checked over the training steps."""
    norms = []
    clip = optim.clip_grad_norm

    def recorded_clip(*args, **kwargs):
        norms.append(clip(*args, **kwargs))
        return norms[-1]
    with monkeypatch.context() as m:
        m.setattr(optim, "clip_grad_norm", recorded_clip)
        run = tiny_run(task, device)
        batches = [run.batch() for _ in range(STEPS)]
        if used is not None:
            used["copies"] = 0
        losses = [run.train_step(batch) for batch in batches]
        if used is not None:      # only real device-array methods; two scalars to the host
            assert used["foreign"] == set()
            assert used["copies"] == 2 * STEPS           # the loss and the gradient norm
    params = run.model.parameters()
    assert all(gpu.is_device_array(p.data) == (device == "cuda") for p in params)
    assert len(norms) == STEPS and min(norms) > run.hparams["clip"]     # clipping did scale
    return losses + norms, [registry.to_host(p.data) for p in params], run.optimizer.state_dict()


@pytest.mark.parametrize("task", sorted(TINY))
def test_training_step_on_device_equals_cpu(task, monkeypatch, device_array_use):
    got_scalars, got_params, got_state = train(task, "cuda", monkeypatch, device_array_use)
    with monkeypatch.context() as m:
        m.setitem(registry.PRIMITIVES["sum"].kernels, "cpu", sequential_sum)
        m.setitem(registry.KERNELS["scatter_add"].kernels, "cpu", scatter_add_in_index_order)
        want_scalars, want_params, want_state = train(task, "cpu", monkeypatch)
    assert got_scalars == want_scalars
    for got, want in zip(got_params, want_params):
        assert got.tobytes() == want.tobytes(), np.max(np.abs(got - want))
    assert set(got_state) == set(want_state)
    for key, want in want_state.items():
        assert got_state[key].tobytes() == want.tobytes(), key

    # against numpy's own (pairwise) np.sum: summation-order rounding only
    pairwise_scalars, pairwise_params, _ = train(task, "cpu", monkeypatch)
    np.testing.assert_allclose(got_scalars, pairwise_scalars, rtol=1e-5)
    lr = T.resolve_settings(task)["hparams"]["lr"]
    for got, want in zip(got_params, pairwise_params):
        assert np.max(np.abs(got - want)) <= lr / 100
