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
import numpy as np
import pytest

from pafree import optim
from pafree import train as T
from pafree.autograd import registry
from pafree.ops import cuda as gpu
from sequential import sequential_sum

# tiny models and short sequences: the simulator runs every CUDA thread as a Python thread
TINY = {"digits": {"n_layers": 1}, "numbers": {"n_enc_layers": 1, "n_dec_layers": 1},
        "addition": {"n_layers": 1, "train_digits": 2, "eval_digits": 2}}
STEPS = 1       # several steps of the device optimizer: test_optim.py


def scatter_add_in_index_order(out, idx, values):
    np.add.at(out, idx, values)


def tiny_run(task, device):
    run = T.build(task, "pa", seed=0, d_model=4, n_heads=2, d_ff=8, batch_size=2, dropout=0.1,
                  clip=0.05, **TINY[task])
    if device == "cuda":                    # what Module.to("cuda") and Run(device=) will do
        registry.use_cuda()
        for p in run.model.parameters():
            p.data = gpu.to_device(p.data)
        hp = run.hparams
        run.optimizer = optim.AdamW(run.model.parameters(), lr=run.schedule,
                                    betas=tuple(hp["betas"]), eps=hp["eps"],
                                    weight_decay=hp["weight_decay"], mode=run.modes["optim"])
    return run


def train(task, device, monkeypatch):
    """Losses, clipping norms, parameters and optimizer state (host copies) after STEPS steps."""
    norms = []
    clip = optim.clip_grad_norm

    def recorded_clip(*args, **kwargs):
        norms.append(clip(*args, **kwargs))
        return norms[-1]
    with monkeypatch.context() as m:
        m.setattr(optim, "clip_grad_norm", recorded_clip)
        run = tiny_run(task, device)
        losses = [run.train_step(run.batch()) for _ in range(STEPS)]
    params = run.model.parameters()
    assert all(gpu.is_device_array(p.data) == (device == "cuda") for p in params)
    assert len(norms) == STEPS and min(norms) > run.hparams["clip"]     # clipping did scale
    return losses + norms, [optim.host(p.data) for p in params], run.optimizer.state_dict()


@pytest.mark.parametrize("task", sorted(TINY))
def test_training_step_on_device_equals_cpu(task, monkeypatch):
    got_scalars, got_params, got_state = train(task, "cuda", monkeypatch)
    with monkeypatch.context() as m:
        m.setitem(registry.PRIMITIVES["sum"].kernels, "cpu", sequential_sum)
        m.setitem(registry.PRIMITIVES["scatter_add"].kernels, "cpu", scatter_add_in_index_order)
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
