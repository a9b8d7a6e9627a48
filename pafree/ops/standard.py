"""THE MULTIPLYING BASELINE: ordinary float32 arithmetic (numpy, BLAS matmul, math.cos).

This module is the one place where real float multiply, divide, exp, log,
square root and cosine are applied: to tensor data (the "standard" component
mode that PA results are compared against: pafree.autograd.registry's fmul,
fdiv, fexp2, flog2, fsqrt, fmatmul) and in the baseline optimizer (its AdamW
update, bias correction and learning-rate schedule: pafree.optim's "standard"
mode). Nothing on a pa-exact / pa-approx path may import from here.
"""
import math

import numpy as np

LN2 = np.float32(np.log(2.0))


# --- tensor data: the registry's float baseline primitives -----------------------

def mul(a, b):
    return np.multiply(a, b, dtype=np.float32)


def div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(a, b, dtype=np.float32)


def exp2(x):
    with np.errstate(over="ignore"):
        return np.exp2(x, dtype=np.float32)


def log2(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log2(x, dtype=np.float32)


def sqrt(x):
    with np.errstate(invalid="ignore"):
        return np.sqrt(x, dtype=np.float32)


def matmul(a, b):
    return np.matmul(a, b, dtype=np.float32)


# --- the optimizer's float baseline (pafree.optim, mode "standard") --------------

def one_minus_power(beta, t, previous):
    """AdamW's bias correction 1 - beta**t, by float power (``previous`` unused: the PA
    version advances an EMA from it)."""
    return np.float32(1.0 - beta ** t)


def adamw(p, g, m, v, scalars):
    """One AdamW update of host arrays p, m, v in place; ``scalars`` a
    pafree.ops.adamw.AdamWScalars (its PA twin: pafree.ops.adamw.adamw_pa)."""
    rate1, rate2, step_size, root_bias2, eps, decay = scalars
    p -= decay * p
    m += rate1 * (g - m)
    v += rate2 * (g * g - v)
    p -= step_size * (m / (np.sqrt(v) / root_bias2 + eps))


class Schedule:
    """The float baseline learning-rate schedule (real multiply, divide and cosine);
    see pafree.optim.make_schedule."""

    def __init__(self, shape, lr, total_steps, warmup_steps, min_lr):
        self.shape, self.lr, self.min_lr = shape, float(lr), float(min_lr)
        self.total, self.warmup = int(total_steps), int(warmup_steps)

    def __call__(self, t):
        if t < self.warmup:
            return np.float32(self.lr * (t + 1) / self.warmup)
        if self.shape == "constant":
            return np.float32(self.lr)
        p = min(t - self.warmup, self.total - self.warmup) / (self.total - self.warmup)
        factor = 1.0 - p if self.shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))
        return np.float32(self.min_lr + (self.lr - self.min_lr) * factor)
