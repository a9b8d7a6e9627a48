"""Integer index helpers for the step's path, without float arithmetic inside.

``np.arange`` computes its length as ceil((stop - start) / step) with a float
divide, and numpy helpers built on it (``np.tri``, ``np.take_along_axis``, ...)
inherit that; ``math.prod`` (and ``np.prod`` through its buffered reduction)
check or plan with float multiplies. The machine audit (pafree/audit/machine.py)
counts all of these.
"""
import numpy as np


def index_range(n):
    """np.arange(n) as intp, from integer iteration only."""
    return np.fromiter(range(n), dtype=np.intp, count=n)


def size(shape):
    """The number of elements of ``shape`` (any iterable of ints): a plain integer product."""
    total = 1
    for extent in shape:
        total = total * extent
    return total
