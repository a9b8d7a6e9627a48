"""The device's summation order, written with numpy: one axis at a time, last axis first,
each in increasing index order (np.add.accumulate is strictly sequential)."""
import numpy as np


def sequential_sum(x, axis=None, keepdims=False):
    x = np.asarray(x, np.float32)
    axes = range(x.ndim) if axis is None else np.atleast_1d(axis)
    axes = sorted({int(a) % x.ndim for a in axes}, reverse=True) if x.ndim else []
    for ax in axes:
        if x.shape[ax] == 0:
            x = np.zeros(x.shape[:ax] + (1,) + x.shape[ax + 1:], np.float32)
        else:
            x = np.add.accumulate(x, axis=ax, dtype=np.float32).take([-1], axis=ax)
    return x if keepdims else x.reshape(tuple(s for d, s in enumerate(x.shape) if d not in axes))
