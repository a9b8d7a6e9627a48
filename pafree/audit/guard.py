"""Dynamic layer: every numpy operation on the step's data arrays is checked as it runs.

The audit views parameters, gradients, optimizer state and batch arrays as
``GuardedArray``, an ndarray subclass whose ``__array_ufunc__`` and
``__array_function__`` see every numpy ufunc (``*``, ``/``, ``np.exp``, ``@``,
reductions, ...) and every numpy function (``np.dot``, ``np.einsum``,
``np.mean``, ...) applied to them, and hand back guarded results, so the guard
follows the data through numpy code wherever it is written (numpy's own Python
functions included). A float operation outside the allowed set (float add,
subtract, negate, abs, compare, min/max, floor/ceil, sign copy) is recorded
with the innermost place outside numpy. Numba kernels accept the subclass as a
plain array; the arrays they allocate are guarded again at the pafree.ops and
autograd-primitive boundaries, where ``counting`` also counts the work done.

It cannot see arrays the code converts back to a plain ndarray (``np.asarray``)
nor Python and numpy scalars: the scalar layer covers those in rewritten code, and
the closed-world watch (world.py) makes any code that is not rewritten a finding.
"""
import contextlib
import types

import numpy as np

from .report import caller_location, reached_from

# Float ufuncs that add, compare, copy or round but never multiply.
ALLOWED_FLOAT_UFUNCS = frozenset(getattr(np, name) for name in (
    "add", "subtract", "negative", "positive", "absolute", "fabs", "sign", "copysign",
    "maximum", "minimum", "fmax", "fmin", "clip", "floor", "ceil", "trunc", "rint",
    "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
    "isnan", "isinf", "isfinite", "signbit", "logical_and", "logical_or", "logical_xor",
    "logical_not", "conjugate",
    "ldexp", "frexp", "nextafter", "spacing"))     # exact bit operations: exponent and ulp moves
FLOAT_ADDS = frozenset((np.add, np.subtract))

# numpy functions that multiply inside compiled code (or through scalar paths a ufunc
# hook cannot see): using them on float data is a finding whatever happens inside.
MULTIPLYING_FUNCTIONS = frozenset(getattr(np, name) for name in (
    "dot", "vdot", "inner", "outer", "tensordot", "einsum", "kron", "cross", "matmul",
    "prod", "cumprod", "nanprod", "nancumprod", "mean", "nanmean", "average",
    "var", "nanvar", "std", "nanstd", "median", "nanmedian", "percentile", "quantile",
    "cov", "corrcoef", "convolve", "correlate", "interp", "polyval", "trapezoid")
    if hasattr(np, name))
MULTIPLYING_METHODS = ("dot", "mean", "var", "std", "prod", "cumprod")
MULTIPLYING_MODULES = ("numpy.linalg", "numpy.fft")


_MULTIPLYING_IDS = frozenset(id(f) for f in MULTIPLYING_FUNCTIONS)


def multiplying_function(func):
    """True for numpy functions that multiply float data (linear algebra, FFT included).
    By identity: the callable may be unhashable."""
    return id(func) in _MULTIPLYING_IDS or getattr(func, "__module__", None) in MULTIPLYING_MODULES


_recorder = None      # the active Recorder, or None when no audit runs
_depth = 0            # > 0 while inside an already-recorded numpy function
_quiet = 0            # > 0 while the audit does its own bookkeeping (not audited code)


def quietly(fn, *args, **kwargs):
    """Call ``fn`` as the audit's own work: the closed-world watch ignores what runs inside."""
    global _quiet
    _quiet += 1
    try:
        return fn(*args, **kwargs)
    finally:
        _quiet -= 1


def activate(recorder):
    """Start (a Recorder) or stop (None) recording; returns the previous recorder."""
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


def is_float(x):
    """True for float/complex Python numbers, numpy scalars and arrays."""
    dtype = getattr(x, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype.kind in "fc"
    return isinstance(x, (float, complex))


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, GuardedArray) else x


def guarded(x):
    """x viewed as a GuardedArray (arrays and numpy float scalars); anything else unchanged."""
    if isinstance(x, GuardedArray):
        return x
    if isinstance(x, np.ndarray):
        return x.view(GuardedArray)
    if isinstance(x, np.floating):
        return np.asarray(x).view(GuardedArray)   # keep reduction results guarded too
    if isinstance(x, tuple):
        return tuple(guarded(v) for v in x)
    if isinstance(x, list):
        return [guarded(v) for v in x]
    return x


def flat(args):
    """The items of ``args``, with lists and tuples among them opened one level."""
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def _add_dynamic(op):
    where = caller_location()
    _recorder.add("dynamic", op, where, reached_from(where))


def _record(op, values):
    if _recorder is not None and _depth == 0 and any(is_float(v) for v in values):
        quietly(_add_dynamic, op)
        return True
    return False


class GuardedArray(np.ndarray):
    """An ndarray whose numpy operations are checked while an audit records."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = [_plain(x) for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if _recorder is not None and _depth == 0:
            values = list(flat(args + list(kwargs.get("out", ())) + [result]))
            if ufunc not in ALLOWED_FLOAT_UFUNCS:
                _record(f"numpy {ufunc.__name__}{'' if method == '__call__' else '.' + method}",
                        values)
            elif (ufunc in FLOAT_ADDS and not _recorder.in_primitive
                  and any(is_float(v) for v in values)):
                size = quietly(lambda: np.size(args[0]) - np.size(result) if method == "reduce"
                               else np.size(result))
                _recorder.float_adds += int(size)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return guarded(result)

    def __array_function__(self, func, types, args, kwargs):
        global _depth
        recorded = multiplying_function(func) and _record(
            f"numpy.{func.__name__}", list(flat(args)) + list(kwargs.values()))
        _depth += recorded
        try:
            result = super().__array_function__(func, types, args, kwargs)
        finally:
            _depth -= recorded
        return guarded(result)


def _guarded_method(name):
    method = getattr(np.ndarray, name)

    def checked(self, *args, **kwargs):
        global _depth
        recorded = _record(f"ndarray.{name}", [self])
        _depth += recorded
        try:
            return guarded(method(self, *args, **kwargs))
        finally:
            _depth -= recorded
    checked.__name__ = name
    return checked


for _name in MULTIPLYING_METHODS:
    setattr(GuardedArray, _name, _guarded_method(_name))


_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.MethodType)


def guard_tree(root):
    """Replace, in place, every ndarray reachable from ``root`` by a GuardedArray view.

    Walks dicts, lists and the attributes of objects (Tensors, modules, optimizers,
    batches); views share memory, so in-place updates still reach the owner.
    Returns the number of arrays guarded.
    """
    seen = set()
    count = 0

    def visit(obj):
        nonlocal count
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type, np.generic)):
            return obj
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "fciub" and not isinstance(obj, GuardedArray):
                count += 1
                return obj.view(GuardedArray)
            return obj
        if isinstance(obj, dict):
            for key, value in obj.items():
                obj[key] = visit(value)
        elif isinstance(obj, list):
            obj[:] = [visit(v) for v in obj]
        elif isinstance(obj, tuple):
            for v in obj:
                visit(v)          # a tuple's own slots cannot be replaced; its members can
        elif hasattr(obj, "__dict__") and not isinstance(obj, _NOT_DATA):
            for key, value in vars(obj).items():
                new = visit(value)
                if new is not value:
                    setattr(obj, key, new)
        return obj

    visit(root)
    return count


# Primitives that only move, select or create data: not listed among the work done.
DATA_MOVEMENT = frozenset(("reshape", "transpose", "broadcast_to", "getitem", "concatenate",
                           "split", "where", "zeros", "ones_like", "copy", "unfold"))


def _elements(name, args, params, out):
    """(elements, float adds) of one primitive call: multiply-accumulates for a matmul
    (each one PAM and one float add), else the output size."""
    if name == "scatter_add":                   # np.add.at(out, idx, values): in place
        size = int(np.size(args[2]))
        return size, size
    if name == "pam_matmul_exact_grads":        # (a, b, dy) -> dy @ b.T and a.T @ dy
        macs = 2 * int(out[0].size) * int(np.shape(args[1])[-1])
        return macs, macs
    first = out[0] if isinstance(out, (tuple, list)) and out else out
    size = int(getattr(first, "size", 0))
    if "matmul" in name:
        inner = np.shape(args[0])[-2 if params.get("transpose_a") else -1]
        return size * int(inner), size * int(inner)
    if name in ("add", "sub"):
        return size, size
    if name == "sum":
        return size, int(np.size(args[0])) - size
    return size, 0


def registered_kernels():
    """(name, kernel, install) for every registered CPU kernel (the primitives among them;
    not the optimizer's fused in-place updates, which return nothing to guard),
    ``install(fn)`` putting ``fn`` in its place: the one place the audit depends on the
    registry's layout."""
    from ..autograd import registry
    fused_updates = (registry.adamw_pa, registry.adamw_standard)

    def installer(kernel):
        return lambda fn: kernel.kernels.__setitem__("cpu", fn)
    return [(name, kernel.kernels["cpu"], installer(kernel))
            for name, kernel in registry.KERNELS.items() if kernel not in fused_updates]


@contextlib.contextmanager
def counting():
    """Count, into the active recorder, the primitives that run; guard what they return.

    Wraps, for the duration, every registered CPU kernel (``registered_kernels``) and the
    pafree.ops elementwise entry points (``pafree.ops.cpu.unary``/``binary``, which every
    pafree.ops function goes through); an ops call made by a primitive counts once, as
    the primitive.
    """
    from ..ops import cpu

    def entry(fn):
        def counted(op, *args):
            out = fn(op, *args)
            if _recorder is None:
                return out
            if not _recorder.in_primitive:
                quietly(lambda: _recorder.count(op, np.size(out)))
            return guarded(out)
        return counted

    def primitive(name, fn):
        def counted(*args, **params):
            if _recorder is None:
                return fn(*args, **params)
            recorder = _recorder
            recorder.in_primitive += 1
            try:
                out = fn(*args, **params)
            finally:
                recorder.in_primitive -= 1
            if name not in DATA_MOVEMENT:
                elements, adds = quietly(_elements, name, args, params, out)
                quietly(recorder.count, name, elements)
                recorder.float_adds += adds
            return guarded(out)
        return counted

    unary, binary = cpu.unary, cpu.binary
    kernels = registered_kernels()
    cpu.unary, cpu.binary = entry(unary), entry(binary)
    for name, fn, install in kernels:
        install(primitive(name, fn))
    try:
        yield
    finally:
        cpu.unary, cpu.binary = unary, binary
        for name, fn, install in kernels:
            install(fn)
