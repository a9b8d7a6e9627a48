"""Optimizers (SGD, AdamW), learning-rate schedules and gradient clipping.

Every function takes ``mode`` (one of pafree.config.OPTIM_MODES): ``"standard"`` is the
float baseline (real float32 multiplies, divides and square roots, all in
pafree.ops.standard: it multiplies, and is labelled so), ``"pa"`` does every step with
piecewise affine operations only: PAM, PAD, pasqrt, float add/subtract/compare, and
integer shift/subtract/compare on the step counter.

The optimizer reaches arithmetic one way: the kernels of pafree.autograd.registry, which
pick the implementation by array type (host or CUDA device arrays). ``ARITHMETIC`` holds
one small table per mode (``Arithmetic``: mul, div, sqrt, the bias correction and the
fused AdamW update); each optimizer is written once over it. AdamW's per-parameter update
is one registry kernel per mode, its per-step scalars one ``AdamWScalars``: the float
baseline's (pafree.ops.standard.adamw, host only) or the fused PA pass
(pafree.ops.adamw's scalar function ``adamw_pa_element`` over bits.py, looped by a serial
CPU Numba kernel or by its CUDA kernel; measured on the CPU: 0.43 ms vs 0.38 ms standard
per step for 63k parameters in 40 arrays, one thread). The schedules differ in how the
factor is evaluated, so they are two classes (the baseline's: pafree.ops.standard.Schedule).

Parameters are any objects with ``.data`` (float32 array, updated in place) and
``.grad`` (float32 array, or None to skip the parameter). In PA mode the arrays may be
host ndarrays or CUDA device arrays (``Module.to("cuda")``), and the optimizer state
lives beside the parameters. The scalar bookkeeping (bias correction, step size,
schedule) stays on the host; the float baseline is host only.

PA choices and their measured errors (reproduce with ``figures/fig_schedule.py`` and
``tests/test_optim.py``):
- Moments: ``m += (1-b) ⊙ (g - m)``, the same EMA as ``b ⊙ m + (1-b) ⊙ g`` with one PAM
  instead of two; PAM by b = 0.999 directly would err in the mantissa of b and shorten the
  EMA horizon by up to 2x, while here only the small increment carries PAM's error.
- Bias correction ``1 - b**t``: the PA EMA of the constant 1, ``c += (1-b) ⊙ (1 - c)``,
  kept as optimizer state. ``paexp2(t ⊙ palog2(b))`` was rejected: palog2(0.999) is
  -0.002 instead of -0.00144. Measured relative error against ``1 - b**t`` for
  t <= 10,000: within [-4.4 %, 0] for b = 0.9, [-5.4 %, 0] for 0.98 and [-1.0 %, 0] for
  0.999 (the EMA runs at PAM's rate, a little slow; the error vanishes as c -> 1).
- Square root and division: ``pasqrt`` (+6.1 % at most) and ``pad`` (+12.5 % at most).
- Decoupled weight decay: ``p -= (lr ⊙ wd) ⊙ p``.
- Schedule: the progress t/T is an exact shift-and-subtract long division in integers
  (24 fraction bits); the cosine factor ``(1 + cos(pi p))/2`` is a PA linear interpolation
  (one PAM) in a constant table of 65 knots; the result is ``min_lr + (lr - min_lr) ⊙
  factor``. Measured over p in [0, 1]: factor error within [-0.00016, +0.0020]
  absolute (PAM shortens each interpolation step by up to 1/9, so the PA cosine lies a
  little above the true one; relative to the factor the error grows near p = 1, where
  the cosine goes to 0 quadratically and the interpolation linearly). The final PAM adds
  a relative error in [-1/9, 0] to the learning rate (none when lr - min_lr is a power
  of two). Warm-up ``lr ⊙ (t+1)/w`` has only that final PAM error.
"""
from typing import Callable, NamedTuple

import numpy as np

from . import config
from .autograd import registry as R
from .ops import bits, standard
from .ops.adamw import AdamWScalars

SCHEDULES = ("constant", "cosine", "linear")


def check_mode(mode):
    if mode not in config.OPTIM_MODES:
        raise ValueError(f"unknown optimizer mode {mode!r}; valid modes: {', '.join(config.OPTIM_MODES)}")


def scalar(x):
    """x (a scalar, 0-d or one-element array, on the host) as a float32 scalar."""
    return np.asarray(x, np.float32).reshape(())[()]


on_device = R.is_device_array


def assign(target, value):
    """target[...] = value, in place, for host and device arrays alike."""
    if on_device(target):
        target.copy_to_device(value)
    else:
        target[...] = R.to_host(value)


def check_backend(mode, arrays):
    """The float baseline runs on the host only: its float multiplies have no device kernel."""
    if mode == "standard" and any(on_device(x) for x in arrays):
        raise ValueError("the standard (float baseline) optimizer runs on the CPU only; "
                         "use mode 'pa' for device arrays")


def pa_one_minus_power(beta, t, previous):
    """1 - beta**t as the PA EMA of the constant 1, advanced one step from ``previous``."""
    return scalar(previous + R.pam(np.float32(1.0 - beta), np.float32(1.0) - previous))


class Arithmetic(NamedTuple):
    """The operations of one optimizer mode."""
    mul: Callable
    div: Callable
    sqrt: Callable
    one_minus_power: Callable   # (beta, t, previous) -> 1 - beta**t, a host float32
    adamw: Callable             # (p, g, m, v, AdamWScalars): p, m, v updated in place


ARITHMETIC = {
    "standard": Arithmetic(R.fmul, R.fdiv, R.fsqrt, standard.one_minus_power, R.adamw_standard),
    "pa": Arithmetic(R.pam, R.pad, R.pasqrt, pa_one_minus_power, R.adamw_pa),
}


class Optimizer:
    """Shared bookkeeping: parameters, learning rate (float or schedule), step counter, state.

    ``self.state`` maps names to float32 arrays (0-d for scalars) updated in place; the
    per-parameter ones live where the parameter's data does (host or device), so build the
    optimizer after moving the model. ``state_dict()`` is the state plus ``step_count``, all
    host ndarrays, so it saves to .npz without pickle and a resumed run continues bit for bit.
    """

    def __init__(self, params, lr, mode):
        check_mode(mode)
        self.params = list(params)
        check_backend(mode, [p.data for p in self.params])
        self.lr = lr
        self.mode = mode
        self.math = ARITHMETIC[mode]
        self.step_count = 0
        self.state = {}

    def current_lr(self):
        """The learning rate of the next step (a schedule is called with the step counter)."""
        return np.float32(self.lr(self.step_count) if callable(self.lr) else self.lr)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.update(self.current_lr())
        self.step_count += 1

    def zeros_like(self, x):
        """A float32 zero array on x's backend."""
        return R.zeros(tuple(x.shape), x)

    def state_dict(self):
        out = {name: R.to_host(value).copy() for name, value in self.state.items()}
        out["step_count"] = np.array(self.step_count, np.int64)
        return out

    def load_state_dict(self, state):
        expected = set(self.state) | {"step_count"}
        if set(state) != expected:
            raise ValueError(f"optimizer state mismatch: missing {sorted(expected - set(state))}, "
                             f"unexpected {sorted(set(state) - expected)}")
        for name, value in self.state.items():
            if np.shape(state[name]) != tuple(value.shape):
                raise ValueError(f"optimizer state {name!r}: shape {np.shape(state[name])}, "
                                 f"expected {tuple(value.shape)}")
            assign(value, np.asarray(state[name], np.float32))
        self.step_count = int(state["step_count"])


class SGD(Optimizer):
    """SGD with momentum and (coupled, L2) weight decay, PyTorch semantics:
    ``g += wd * p; buf = momentum * buf + g; p -= lr * buf``."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, mode="pa"):
        super().__init__(params, lr, mode)
        self.momentum = np.float32(momentum)
        self.weight_decay = np.float32(weight_decay)
        if momentum:
            for i, p in enumerate(self.params):
                self.state[f"momentum.{i}"] = self.zeros_like(p.data)

    def update(self, lr):
        mul, add = self.math.mul, R.add
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = add(g, mul(self.weight_decay, p.data))
            if self.momentum:
                buf = self.state[f"momentum.{i}"]
                assign(buf, add(mul(self.momentum, buf), g))
                g = buf
            assign(p.data, R.sub(p.data, mul(lr, g)))


class AdamW(Optimizer):
    """AdamW (Loshchilov & Hutter) with decoupled weight decay and bias correction:
    ``p -= lr*wd*p; m, v = EMAs of g, g*g; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, mode="pa"):
        super().__init__(params, lr, mode)
        self.betas = (float(betas[0]), float(betas[1]))
        self.rates = (np.float32(1.0 - betas[0]), np.float32(1.0 - betas[1]))
        self.eps = np.float32(eps)
        self.weight_decay = np.float32(weight_decay)
        self.state["bias1"] = np.zeros((), np.float32)   # 1 - b1**t
        self.state["bias2"] = np.zeros((), np.float32)   # 1 - b2**t
        for i, p in enumerate(self.params):
            self.state[f"m.{i}"] = self.zeros_like(p.data)
            self.state[f"v.{i}"] = self.zeros_like(p.data)

    def update(self, lr):
        M = self.math
        t = self.step_count + 1
        bias1, bias2 = self.state["bias1"], self.state["bias2"]
        bias1[...] = M.one_minus_power(self.betas[0], t, bias1)
        bias2[...] = M.one_minus_power(self.betas[1], t, bias2)
        scalars = AdamWScalars(*self.rates, step_size=scalar(M.div(lr, bias1)),
                               root_bias2=scalar(M.sqrt(bias2)), eps=self.eps,
                               decay=scalar(M.mul(lr, self.weight_decay)))
        for i, p in enumerate(self.params):
            if p.grad is not None:
                M.adamw(p.data, p.grad, self.state[f"m.{i}"], self.state[f"v.{i}"], scalars)


def clip_grad_norm(params, max_norm, mode="pa"):
    """Scale all gradients by max_norm / norm when their global L2 norm exceeds max_norm.

    Returns the norm before clipping (a float). In PA mode the squares are PAMs, the root
    pasqrt and the scale a PAD, so norm and scale carry those errors (a clipped norm can
    exceed max_norm by up to 12.5 %). Squares and sums run where the gradients are (the
    registry's kernels); only the total comes to the host, one copy per call. The
    per-parameter sums add in the backend's order (numpy pairwise, the device in index
    order: the norms agree within float32 summation-order rounding)."""
    check_mode(mode)
    M = ARITHMETIC[mode]
    grads = [p for p in params if p.grad is not None]
    check_backend(mode, [p.grad for p in grads])
    total = np.float32(0.0)
    for p in grads:
        total = R.add(total, R.sum_(M.mul(p.grad, p.grad), None, False))
    norm = scalar(M.sqrt(R.to_host(total)))
    if norm > max_norm:
        scale = scalar(M.div(np.float32(max_norm), norm))
        for p in grads:
            p.grad = M.mul(p.grad, scale)
    return float(norm)


def make_schedule(shape, lr, total_steps, warmup_steps=0, min_lr=0.0, mode="pa"):
    """The learning rate as a function of the update number t = 0, 1, 2, ...

    Warm-up ``lr * (t+1)/warmup_steps`` for t < warmup_steps, then ``shape``: ``constant``
    (lr), ``linear`` or ``cosine`` decay from lr to min_lr, reached at t = total_steps and kept.
    """
    check_mode(mode)
    if shape not in SCHEDULES:
        raise ValueError(f"unknown schedule {shape!r}; valid schedules: {', '.join(SCHEDULES)}")
    if warmup_steps < 0 or shape != "constant" and total_steps <= warmup_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
    cls = standard.Schedule if mode == "standard" else PASchedule
    return cls(shape, lr, total_steps, warmup_steps, min_lr)


FRACTION_BITS = 24
KNOT_BITS = 6                        # 2**6 = 64 cosine segments
# Constants of the PA cosine: (1 + cos(pi i/64))/2 for i = 0..64, computed once at import
# like any float literal; evaluating the schedule never calls cos.
COSINE_KNOTS = (0.5 * (1.0 + np.cos(np.pi * np.arange(2 ** KNOT_BITS + 1) / 2 ** KNOT_BITS))
                ).astype(np.float32)
COSINE_STEPS = COSINE_KNOTS[1:] - COSINE_KNOTS[:-1]


def fixed_fraction(num, den):
    """floor(num/den * 2**24) for integers 0 <= num <= den, den > 0, by long division:
    integer shift, compare and subtract only (no multiply or divide, even on integers)."""
    if num >= den:
        return 1 << FRACTION_BITS
    quotient, rest = 0, num
    for _ in range(FRACTION_BITS):
        rest <<= 1
        quotient <<= 1
        if rest >= den:
            rest -= den
            quotient |= 1
    return quotient


def fixed_to_float(q, frac_bits):
    """q * 2**-frac_bits as a float32, exactly, for 0 <= q <= 2**24 (int32 -> float32
    conversion, exact in that range; the 2**-frac_bits is an exponent add)."""
    return np.array(bits.int_to_float(q, -frac_bits), np.int32).view(np.float32)[()]


def pa_cosine(q):
    """(1 + cos(pi p))/2 at p = q * 2**-24 by PA linear interpolation in COSINE_KNOTS."""
    seg_bits = FRACTION_BITS - KNOT_BITS
    i = q >> seg_bits
    if i == len(COSINE_STEPS):
        return COSINE_KNOTS[-1]
    within = fixed_to_float(q & ((1 << seg_bits) - 1), seg_bits)
    return scalar(COSINE_KNOTS[i] + R.pam(COSINE_STEPS[i], within))


class PASchedule:
    """Multiplication-free schedule: integer progress, PA cosine, one PAM by the lr span."""

    def __init__(self, shape, lr, total_steps, warmup_steps, min_lr):
        self.shape, self.total, self.warmup = shape, int(total_steps), int(warmup_steps)
        self.lr, self.min_lr = np.float32(lr), np.float32(min_lr)
        self.span = self.lr - self.min_lr

    def __call__(self, t):
        if t < self.warmup:
            return scalar(R.pam(self.lr, fixed_to_float(fixed_fraction(t + 1, self.warmup),
                                                          FRACTION_BITS)))
        if self.shape == "constant":
            return self.lr
        q = fixed_fraction(min(t - self.warmup, self.total - self.warmup),
                           self.total - self.warmup)
        if self.shape == "linear":
            factor = np.float32(1.0) - fixed_to_float(q, FRACTION_BITS)
        else:
            factor = pa_cosine(q)
        return scalar(self.min_lr + R.pam(self.span, factor))


class LossScale:
    """Dynamic loss scaling by powers of two, for float16 mixed precision (pafree train
    --precision fp16): the loss gradient starts at 2**exponent instead of 1 so that small
    gradients survive float16's range; ``unscale`` takes 2**exponent out of the parameter
    gradients again with a PAM by 2**-exponent, which for a power of two is an exact
    exponent subtract (an integer add on the bits, SPEC section 2). A step whose gradients
    hold an inf or NaN (float16 overflow) is skipped and the exponent drops by one;
    after ``growth_interval`` good steps in a row it grows by one. The scale never
    changes a number otherwise: every PA op and float add commutes exactly with a
    power of two as long as nothing overflows or flushes."""

    def __init__(self, exponent=16, growth_interval=200):
        self.exponent, self.good_steps, self.growth_interval = exponent, 0, growth_interval

    def seed(self):
        """2**exponent as a float32 (built from its bits: the loss gradient to start backward with)."""
        return power_of_two(self.exponent)

    def unscale(self, params):
        """Divide the gradients by the scale (exactly); return whether all are finite, and
        update the exponent (the caller skips the step when they are not)."""
        grads = [p for p in params if p.grad is not None]
        inverse = power_of_two(-self.exponent)
        for p in grads:
            p.grad = R.pam(p.grad, inverse)
        finite = all(np.isfinite(p.grad).all() for p in grads)
        if not finite:
            self.exponent, self.good_steps = self.exponent - 1, 0
        elif self.good_steps + 1 == self.growth_interval:
            self.exponent, self.good_steps = self.exponent + 1, 0
        else:
            self.good_steps += 1
        return finite

    def state_dict(self):
        return {"exponent": np.int64(self.exponent), "good_steps": np.int64(self.good_steps)}

    def load_state_dict(self, state):
        self.exponent, self.good_steps = int(state["exponent"]), int(state["good_steps"])


def power_of_two(e):
    """2**e as a float32, from its bits (bits.pow2 of the biased exponent)."""
    return np.array(bits.pow2(0, e + bits.BIAS), np.int32).view(np.float32)[()]
