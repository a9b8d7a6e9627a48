"""Mixed-precision PA training (pafree train --precision bf16|fp16): the rounding to the
format, the matmul boundaries, SPEC section 7's float32-GEMM identity, the fp16 loss
scale (exact, skip on overflow), and the setting in the run's config and checkpoint."""
import json

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pafree import config, ops
from pafree import functional as F
from pafree import run as T
from pafree.autograd.tensor import Tensor
from pafree.ops import bits, cpu
from pafree.optim import LossScale, power_of_two
from pafree.run.loop import default_out
from pafree.run.run import CONFIG
from test_train import TINY

DTYPES = {"bf16": np.dtype(ml_dtypes.bfloat16), "fp16": np.dtype(np.float16)}
FORMATS = {"bf16": bits.BFLOAT16, "fp16": bits.FLOAT16}


def flushed_cast(x, precision):
    """x cast to the format by ml_dtypes/numpy and back, subnormal results (and float32
    subnormal inputs) flushed to zero."""
    with np.errstate(over="ignore"):
        y = x.astype(DTYPES[precision]).astype(np.float32)
    tiny = (np.abs(y) < np.float32(2.0) ** (1 - FORMATS[precision].BIAS)) | \
        (np.abs(x) < np.finfo(np.float32).tiny)
    return np.where(tiny, np.copysign(np.float32(0), y), y)


@pytest.mark.parametrize("precision", list(DTYPES))
def test_round_to_is_the_cast_with_subnormals_flushed(precision):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(50_000).astype(np.float32),
                        rng.integers(-2**31, 2**31, 50_000).astype(np.int32).view(np.float32),
                        np.float32([0, -0.0, np.inf, -np.inf, 65519, 65520, 3.4e38, 1e-40]),
                        np.int32([FORMATS[precision].TINY_UP + d for d in (-1, 0, 1)]).view(np.float32)])
    x = x[~np.isnan(x)]
    got = cpu.round_to(x, precision)
    assert got.view(np.int32).tolist() == flushed_cast(x, precision).view(np.int32).tolist()
    assert cpu.round_to(x, "fp32") is x


def operands(precision, shape, rng):
    return cpu.round_to(rng.standard_normal(shape).astype(np.float32), precision)


@pytest.mark.parametrize("precision", list(DTYPES))
def test_matmul_rounds_operands_output_and_gradients(precision):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 3)).astype(np.float32)
    ta, tw = Tensor(a, requires_grad=True), Tensor(w, requires_grad=True)
    with config.mode("pa"), config.precision(precision):
        y = F.matmul(ta, tw)
        F.sum(F.mul(y, y)).backward()
    ra, rw = cpu.round_to(a, precision), cpu.round_to(w, precision)
    assert y.data.tolist() == cpu.round_to(ops.pam_matmul(ra, rw), precision).tolist()
    for g in (ta.grad, tw.grad):                       # the gradients are the format's values
        assert np.array_equal(cpu.round_to(g, precision), g)
    with config.mode("pa"):                            # fp32: no rounding anywhere
        assert np.array_equal(F.matmul(Tensor(a), Tensor(w)).data, ops.pam_matmul(a, w))


def normal_pattern(fmt):
    return st.builds(lambda s, e, m: (s * fmt.SIGN) | e << fmt.MANT_BITS | m,
                     st.integers(0, 1), st.integers(1, (1 << fmt.EXP_BITS) - 2),
                     st.integers(0, (1 << fmt.MANT_BITS) - 1))


@given(data=st.data())
def test_float32_pam_of_format_values_is_the_format_pam(data):
    """SPEC section 7: on exactly converted operands the float32 PAM is the format's PAM
    wherever the format's result is normal. In bfloat16 (float32's exponent range) also
    where it is not; in float16 the two differ exactly where float16 overflows or flushes."""
    for precision in DTYPES:
        fmt = FORMATS[precision]
        a, b = (np.array([data.draw(normal_pattern(fmt))], np.int16).view(DTYPES[precision])
                for _ in range(2))
        in_format = ops.pam(a, b).astype(np.float32)
        in_float32 = ops.pam(a.astype(np.float32), b.astype(np.float32))
        if precision == "bf16":
            assert in_float32.view(np.int32)[0] == in_format.view(np.int32)[0]
        else:
            fits = in_float32.view(np.int32)[0] == cpu.round_to(in_float32, "fp16").view(np.int32)[0]
            assert fits == (in_float32.view(np.int32)[0] == in_format.view(np.int32)[0])


# ---- the fp16 loss scale ------------------------------------------------------------------

class Param:
    def __init__(self, grad):
        self.grad = grad


def test_power_of_two_bits():
    for e in (-126, -16, 0, 1, 16, 127):
        assert float(power_of_two(e)) == 2.0 ** e


def test_unscale_is_exact_and_skips_overflow():
    rng = np.random.default_rng(2)
    scale = LossScale(exponent=10, growth_interval=3)
    grads = rng.standard_normal(100).astype(np.float32)
    p = Param(grads * np.float32(1024))                 # as the scaled backward leaves them
    assert scale.unscale([p]) and np.array_equal(p.grad, grads) and scale.good_steps == 1
    bad = Param(np.float32([1.0, np.inf]))
    assert not scale.unscale([bad]) and (scale.exponent, scale.good_steps) == (9, 0)
    for _ in range(3):
        assert scale.unscale([Param(grads)])
    assert (scale.exponent, scale.good_steps) == (10, 0)   # grown after 3 good steps


def tiny_fp16(**kw):
    return T.build("digits", "pa", precision="fp16", steps=10, batch_size=8, **TINY["digits"], **kw)


def test_fp16_step_with_overflowing_scale_is_skipped():
    run = tiny_fp16()
    run.loss_scale.exponent = 120                       # 2**120: every fp16 gradient overflows
    before = [p.data.copy() for p in run.model.parameters()]
    run.train_step(run.batch())
    assert run.loss_scale.exponent == 119 and run.step == 1
    assert all(np.array_equal(b, p.data) for b, p in zip(before, run.model.parameters()))
    run.loss_scale.exponent = 12
    run.train_step(run.batch())
    assert any(not np.array_equal(b, p.data) for b, p in zip(before, run.model.parameters()))


def test_bf16_gradients_do_not_depend_on_a_power_of_two_seed():
    """The scale is exact: the bf16 backward from 2**8 is 2**8 times the one from 1."""
    grads = []
    for seed_exponent in (0, 8):
        run = T.build("digits", "pa", precision="bf16", steps=10, batch_size=8, **TINY["digits"])
        with config.mode(**run.modes), config.precision("bf16"):
            loss = run.task.loss(run.model, run.batch(), 0.0)
            loss.backward(power_of_two(seed_exponent))
        grads.append([ops.pam(p.grad, power_of_two(-seed_exponent)) for p in run.model.parameters()])
    for g0, g8 in zip(*grads):
        assert np.array_equal(g0, g8)


def test_precision_is_in_config_and_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "run"
    T.train("digits", "pa", seed=1, out=str(out), progress=False, eval_limit=10, stop_at=3,
            precision="fp16", steps=6, batch_size=8, **TINY["digits"])
    assert json.loads((out / CONFIG).read_text())["precision"] == "fp16"
    with np.load(out / T.CHECKPOINT) as ckpt:
        assert int(ckpt["scale/exponent"]) == 16 and int(ckpt["scale/good_steps"]) == 3
    final = T.train(out=str(out), resume=True, progress=False, eval_limit=10)
    assert final["steps"] == 6
    with pytest.raises(ValueError, match="only steps may change"):
        T.train(out=str(out), resume=True, progress=False, precision="bf16")
    assert default_out("digits", "pa", 0, "bf16").endswith("digits-pa-bf16-seed0")
    assert default_out("digits", "pa", 0, "fp32").endswith("digits-pa-seed0")
    assert "precision" not in T.resolve_settings("digits")     # fp32 configs as before
    with pytest.raises(ValueError, match="unknown precision"):
        T.resolve_settings("digits", precision="fp8")
