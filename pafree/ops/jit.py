"""The one place Numba compile policy lives.

Every CPU kernel is compiled with ``cache=True`` (a second start loads the
machine code from ``__pycache__``) and ``fastmath=False`` (fast-math would let
LLVM contract adds into fused multiply-adds or reassociate float sums; the
audit then proves what was emitted). ``KERNELS`` lists every compiled kernel
so the audit can scan them all.
"""
import numba

KERNELS = {}


def cpu_kernel(parallel=False, name=None):
    """Decorator: compile a loop kernel for the CPU under pafree's policy."""
    def wrap(fn):
        kernel = numba.njit(cache=True, fastmath=False, nogil=True, parallel=parallel)(fn)
        KERNELS[name or fn.__name__] = kernel
        return kernel
    return wrap
