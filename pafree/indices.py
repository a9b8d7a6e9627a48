"""Index arrays for the step's path without float arithmetic.

``np.arange`` computes its length as ceil((stop - start) / step) with a float
divide, and numpy helpers built on it (``np.tri``, ``np.take_along_axis``, ...)
inherit that; the machine audit (pafree/audit/machine.py) counts it.
"""
import numpy as np


def index_range(n):
    """np.arange(n) as intp, from integer iteration only."""
    return np.fromiter(range(n), dtype=np.intp, count=n)
