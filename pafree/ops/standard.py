"""THE MULTIPLYING BASELINE: ordinary float32 arithmetic (numpy, BLAS matmul).

This module is the one place where real float multiply, divide, exp, log and
square root are applied to tensor data. It backs the "standard" component mode
that PA results are compared against; nothing on a pa-exact / pa-approx path
may import from here.
"""
import numpy as np

LN2 = np.float32(np.log(2.0))


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
