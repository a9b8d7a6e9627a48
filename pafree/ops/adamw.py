"""The fused PA AdamW update, written once for the CPU and CUDA.

``adamw_pa_element`` is plain scalar code over bits.py (PAM, PAD, pasqrt) and
float add/subtract: ``adamw_pa_update`` below loops over it on the CPU, and
pafree.ops.cuda.kernels wraps the same function in a CUDA kernel, so both
backends compute the same bits. ``adamw_pa`` (here, and its device twin in
pafree.ops.cuda.api) is the CPU backend of the registry kernel
``pafree.autograd.registry.adamw_pa``, which pafree.optim calls; its per-step
scalars travel as one ``AdamWScalars``.
"""
from typing import NamedTuple

import numpy as np
from numba.extending import register_jitable

from . import bits
from .jit import cpu_kernel, prefer_vector_width
from .tuning import VECTOR_BITS_HERE


class AdamWScalars(NamedTuple):
    """The per-step scalars of one AdamW update (float32, computed on the host)."""
    rate1: np.float32        # 1 - beta1
    rate2: np.float32        # 1 - beta2
    step_size: np.float32    # lr / (1 - beta1**t)
    root_bias2: np.float32   # sqrt(1 - beta2**t)
    eps: np.float32
    decay: np.float32        # lr * weight_decay


@register_jitable
def as_bits(x):
    return np.float32(x).view(np.int32)


@register_jitable
def as_float(b):
    return np.int32(b).view(np.float32)


@register_jitable(inline="always")
def adamw_pa_element(p, g, m, v, rate1, rate2, step_size, root_bias2, eps, decay):
    """One element of the PA AdamW update -> new (p, m, v): the steps of
    pafree.ops.standard.adamw with PAM, PAD and pasqrt from bits.py,
    float add/subtract otherwise. Inlined at the IR level: as a called function
    returning a tuple it made the CPU loop 12x slower."""
    x = p - as_float(bits.pam(as_bits(decay), as_bits(p)))
    m = m + as_float(bits.pam(as_bits(rate1), as_bits(g - m)))
    g2 = as_float(bits.pam(as_bits(g), as_bits(g)))
    v = v + as_float(bits.pam(as_bits(rate2), as_bits(g2 - v)))
    denom = as_float(bits.pad(bits.pasqrt(as_bits(v)), as_bits(root_bias2))) + eps
    step = bits.pam(as_bits(step_size), bits.pad(as_bits(m), as_bits(denom)))
    return x - as_float(step), m, v


@cpu_kernel(name="adamw_pa_update")
def adamw_pa_update(p, g, m, v, rate1, rate2, step_size, root_bias2, eps, decay):
    """PA AdamW on flat float32 arrays, in place, one element at a time."""
    prefer_vector_width(VECTOR_BITS_HERE)
    for i in range(p.size):
        p[i], m[i], v[i] = adamw_pa_element(p[i], g[i], m[i], v[i], rate1, rate2,
                                            step_size, root_bias2, eps, decay)


def adamw_pa(p, g, m, v, scalars):
    """One fused PA AdamW pass over host arrays p, g, m, v (p, m, v updated in place)."""
    flat = [x.reshape(-1) for x in (p, g, m, v)]
    if not all(np.may_share_memory(x, y) for x, y in zip(flat, (p, g, m, v))):
        raise ValueError("AdamW(pa) needs contiguous parameter, gradient and state arrays")
    adamw_pa_update(*(np.asarray(x) for x in flat), *(np.float32(c) for c in scalars))
