"""The one place Numba compile policy lives.

Every CPU kernel is compiled with ``fastmath=False`` (fast-math would let LLVM
contract adds into fused multiply-adds or reassociate float sums; the audit
then proves what was emitted) and cached on disk (a second start loads the
machine code from ``__pycache__``). ``KERNELS`` lists every compiled kernel so
the audit can scan them all.

Numba's own cache is keyed on the source of the kernel's file only, but every
kernel inlines the bit logic of ``bits.py``: editing it would leave stale
machine code behind. Our cache therefore also keys on every source file of
``pafree/ops``.
"""
import hashlib
from pathlib import Path

import numba
from numba.core import caching

KERNELS = {}
OPS_DIR = Path(__file__).resolve().parent


def ops_source_stamp():
    """sha256 over the sources of pafree/ops and its packages (the bit logic and tile
    machinery every kernel inlines)."""
    digest = hashlib.sha256()
    for path in sorted(OPS_DIR.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


class _OpsStamp:
    def get_source_stamp(self):
        return super().get_source_stamp(), ops_source_stamp()


class _UserProvidedLocator(_OpsStamp, caching.UserProvidedCacheLocator):
    pass          # NUMBA_CACHE_DIR, when set (the machine audit's AVX2 builds live there)


class _InTreeLocator(_OpsStamp, caching.InTreeCacheLocator):
    pass


class _UserWideLocator(_OpsStamp, caching.UserWideCacheLocator):
    pass


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_UserProvidedLocator, _InTreeLocator, _UserWideLocator]


class _KernelCache(caching.FunctionCache):
    _impl_class = _KernelCacheImpl


def cpu_kernel(parallel=False, name=None):
    """Decorator: compile a loop kernel for the CPU under pafree's policy."""
    def wrap(fn):
        kernel = numba.njit(fastmath=False, nogil=True, parallel=parallel)(fn)
        kernel._cache = _KernelCache(fn)   # what cache=True does, with our stamp
        KERNELS[name or fn.__name__] = kernel
        return kernel
    return wrap
