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
from numba import types
from numba.core import caching
from numba.extending import intrinsic

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


def set_vector_width(function, vector_bits):
    """Give an LLVM function the attribute prefer-vector-width = vector_bits, so the loop
    vectoriser uses vectors that wide in it (tuning.py says why it matters on Intel)."""
    # llvmlite's attribute set only admits keywords, not "key"="value" pairs
    set.add(function.attributes, f'"prefer-vector-width"="{vector_bits}"')


@intrinsic
def prefer_vector_width(typingctx, vector_bits):
    """Compile the calling function's loops for vector_bits-wide vectors (a literal int).
    Inside a prange loop the body is its own function: call it there."""
    if not isinstance(vector_bits, types.IntegerLiteral):
        return None

    def codegen(context, builder, sig, args):
        set_vector_width(builder.function, vector_bits.literal_value)
        return context.get_dummy_value()
    return types.none(vector_bits), codegen


# a fixed pickled id, so the kernels' disk-cache keys are the same in every process
prefer_vector_width._set_uuid(f"{__name__}.prefer_vector_width")
