"""The closed world of the Python layers: whatever runs in the audited region unchecked is a finding.

Two rules, active while an audit records:

- *Python code.* ``sys.setprofile`` sees every Python frame that starts (a call, a
  generator or coroutine resumed, a module imported). Its code object must be an
  instrumented copy (``scalars.Instrumented``: the scalar rewrite of its source) or the
  audit's own; anything else is a finding naming the code (file:line qualname). A file
  first seen is instrumented then, so later calls are checked; ``Audit.rehearse`` runs a
  copy of the step first so that library code (numpy's Python functions, the standard
  library) is instrumented before the audited run.
- *C callables.* Every call in instrumented code goes through ``scalars._Hook.callee``,
  which asks ``judge(f)``; a C call made from an uninstrumented frame reaches the profile
  hook's ``c_call`` event and is judged the same way. A callable is allowed when it moves
  data, does integer work, float add/subtract/compare or an exact bit operation (ldexp,
  frexp, nextafter, copysign, spacing), or is a Numba kernel (the static layer's).
  Arithmetic that multiplies only when a float takes part (``float.__mul__``,
  ``np.multiply``, ``math.prod``) is checked on its arguments. Unknown means finding.

Python 3.11 has no ``sys.monitoring``: the profile hook sees calls of builtin functions
and method descriptors (``c_call``), not calls of other C callables (ufuncs, slot
wrappers, types) nor what C code calls back into C; those are judged where instrumented
code calls them (``callee``), and a forbidden C callable handed by value to C code
(``map(operator.mul, ...)``, ``functools.reduce``) is judged when it is handed over.
"""
import functools
import gc
import sys
import types

import numpy as np

from . import guard
from .report import _AUDIT, short_path

ALLOW, CHECK, FORBID, PYTHON = "allow", "check", "forbid", "python"

# Stdlib numeric modules: their numbers multiply in C or in code the audit cannot rewrite.
NUMERIC_MODULES = ("decimal", "_decimal", "_pydecimal", "fractions", "cmath", "statistics",
                   "random", "_random", "numbers")

# Arithmetic dunders: a multiply, divide, modulo, power or rounding when a float takes part.
ARITHMETIC = frozenset(f"__{p}{n}__" for n in ("mul", "truediv", "floordiv", "mod", "pow",
                                                "matmul", "divmod") for p in ("", "r", "i")
                       ) | {"__round__"}

# Types whose every method moves or compares data or does integer work (arithmetic dunders
# are judged on their operands).
DATA_TYPES = frozenset(f"builtins.{n}" for n in (
    "list", "tuple", "dict", "set", "frozenset", "str", "bytes", "bytearray", "object", "type",
    "range", "slice", "memoryview", "int", "bool", "NoneType", "dict_keys", "dict_values",
    "dict_items", "list_iterator", "tuple_iterator", "enumerate", "zip", "map", "filter",
    "reversed", "super", "property", "function", "method", "cell", "frame", "code",
    "generator", "mappingproxy", "getset_descriptor", "member_descriptor")) | {
    "numpy.dtype", "numpy.flatiter", "numpy.random._generator.Generator",
    "numpy.random._pcg64.PCG64", "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.BitGenerator", "collections.deque",
    "collections.OrderedDict", "collections.defaultdict", "functools.partial", "_thread.RLock", "_thread.lock",
    "contextvars.ContextVar", "weakref.ReferenceType", "_weakrefset.WeakSet",
    "numpy.ndarray.flags", "numpy._core.multiarray.flagsobj", "numpy.nditer", "numpy.broadcast",
    "numpy._core._multiarray_umath._array_converter", "_multiprocessing.SemLock"} | {
    f"numpy.{t.__name__}" for t in set(np.sctypeDict.values())
    if issubclass(t, np.generic) and not issubclass(t, np.inexact)}

# Methods of float arrays and scalars that copy, select, compare, add or round exactly.
FLOAT_METHODS = frozenset((
    "all", "any", "argmax", "argmin", "argpartition", "argsort", "astype", "byteswap", "choose",
    "clip", "compress", "conj", "conjugate", "copy", "cumsum", "diagonal", "fill", "flatten",
    "getfield", "item", "max", "min", "nonzero", "partition", "put", "ravel", "repeat",
    "reshape", "resize", "searchsorted", "setfield", "setflags", "sort", "squeeze", "sum",
    "swapaxes", "take", "tobytes", "tolist", "transpose", "view", "hex", "fromhex",
    "is_integer", "as_integer_ratio", "__array__", "__array_wrap__", "__array_function__",
    "__array_ufunc__", "__array_finalize__", "__copy__", "__deepcopy__", "__reduce__",
    "__reduce_ex__", "__setstate__", "__getitem__", "__setitem__", "__len__", "__iter__",
    "__contains__", "__bool__", "__int__", "__float__", "__index__", "__complex__", "__repr__",
    "__str__", "__format__", "__hash__", "__sizeof__", "__trunc__", "__floor__", "__ceil__",
    "__getnewargs__", "__init__", "__new__", "__class_getitem__", "__dlpack__")) | frozenset(
    f"__{p}{n}__" for n in ("add", "sub", "and", "or", "xor", "lshift", "rshift")
    for p in ("", "r", "i")) | frozenset(
    f"__{n}__" for n in ("neg", "pos", "abs", "invert", "lt", "le", "eq", "ne", "gt", "ge"))
FLOAT_TYPES = frozenset(("builtins.float", "builtins.complex", "numpy.ndarray",
                         "numpy.generic", "numpy.number", "numpy.inexact", "numpy.floating"))
FLOAT_TYPES |= {f"numpy.{t}" for t in ("float16", "float32", "float64", "longdouble",
                                       "complex64", "complex128", "integer",
                                       "signedinteger", "unsignedinteger")}

# Functions (by qualified name) that move data, do integer work, add, compare or are exact.
ALLOWED = frozenset(
    [f"builtins.{n}" for n in (
        "len", "isinstance", "issubclass", "getattr", "setattr", "hasattr", "delattr", "iter",
        "next", "id", "hash", "repr", "ascii", "format", "min", "max", "abs", "sum", "sorted",
        "any", "all", "callable", "vars", "dir", "locals", "globals", "round", "chr", "ord",
        "bin", "hex", "oct", "print", "__build_class__", "__import__", "aiter", "anext")]
    + [f"math.{n}" for n in (
        "floor", "ceil", "trunc", "fabs", "copysign", "isfinite", "isinf", "isnan", "frexp",
        "ldexp", "nextafter", "ulp", "fsum", "gcd", "lcm", "isqrt", "comb", "perm",
        "factorial")]
    + [f"_operator.{n}" for n in (
        "add", "sub", "neg", "pos", "abs", "lt", "le", "eq", "ne", "ge", "gt", "not_", "truth",
        "is_", "is_not", "index", "getitem", "setitem", "delitem", "contains", "and_", "or_",
        "xor", "inv", "invert", "lshift", "rshift", "concat", "iadd", "isub", "iand", "ior",
        "ixor", "ilshift", "irshift", "iconcat", "length_hint", "countOf", "indexOf")]
    + [f"numpy.{n}" for n in (
        "empty", "empty_like", "zeros", "array", "asarray", "asanyarray", "ascontiguousarray",
        "asfortranarray", "concatenate", "copyto", "where", "result_type", "can_cast",
        "promote_types", "min_scalar_type", "frombuffer", "fromiter", "count_nonzero",
        "_core._multiarray_umath.count_nonzero", "lib.array_utils.normalize_axis_index", "shares_memory",
        "may_share_memory", "lexsort", "putmask", "packbits", "unpackbits", "datetime_data",
        "busday_count", "normalize_axis_index", "_reconstruct", "from_dlpack", "geterrobj",
        "seterrobj", "_get_promotion_state", "_set_promotion_state", "get_printoptions")]
    + ["numpy._core._multiarray_umath.normalize_axis_index",
       "numpy._core._multiarray_umath._make_extobj", "numpy._core._multiarray_umath._extobj_contextvar",
       "numpy.random.default_rng", "numpy.random._generator.Generator.integers",
       "numpy.random._generator.Generator.permutation",
       "numpy.random.bit_generator.generate_state", "numpy.random._generator.Generator.shuffle",
       "_abc._abc_instancecheck", "_abc._abc_subclasscheck", "_functools.reduce",
       "_functools.cmp_to_key", "itertools.chain", "itertools.product", "itertools.repeat",
       "itertools.islice", "itertools.count", "itertools.accumulate", "itertools.starmap",
       "itertools.groupby", "itertools.zip_longest", "sys._getframe", "sys.getrecursionlimit",
       "_thread.allocate_lock", "_thread.get_ident", "time.time", "time.perf_counter",
       "posix.fspath", "posix.stat", "posix.getcwd", "_weakref.ref", "_warnings.warn",
       "builtins.sorted", "builtins.reversed", "builtins.exec", "builtins.compile",
       "contextvars.copy_context", "_contextvars.ContextVar.get", "_contextvars.ContextVar.set",
       "_contextvars.ContextVar.reset"])

# Multiply (or divide, root, power) when a float takes part: checked on the arguments.
CHECKED = frozenset(
    ["builtins.pow", "builtins.divmod", "math.prod", "math.isclose", "numpy.dot", "numpy.vdot",
     "numpy.inner", "numpy.arange", "numpy.linspace", "numpy._core._multiarray_umath.c_einsum",
     "numpy.correlate", "numpy._core.multiarray.correlate2", "numpy.interp"]
    + [f"_operator.{n}" for n in ("mul", "truediv", "floordiv", "mod", "pow", "matmul", "imul",
                                  "itruediv", "ifloordiv", "imod", "ipow", "imatmul")])


# Allowed callables that call what they are handed: checked for forbidden callables passed by value.
HIGHER_ORDER = frozenset(("builtins.map", "builtins.filter", "builtins.sorted", "builtins.min",
                          "builtins.max", "_functools.reduce", "functools.partial",
                          "itertools.starmap", "itertools.accumulate", "builtins.list.sort"))


# Python functions of libraries that are runtime queries, run as the audit's own work:
# Numba's thread count (a lock and a ctypes call into its thread pool).
QUIET_PYTHON = frozenset(("numba.np.ufunc.parallel.get_num_threads",))


def runs_quietly(f):
    return (isinstance(f, types.FunctionType)
            and f"{f.__module__}.{f.__qualname__}" in QUIET_PYTHON)


def _owner(cls, name):
    """The class in cls's MRO that defines ``name`` (cls itself when none does)."""
    for klass in getattr(cls, "__mro__", ()):
        if name in vars(klass):
            return klass
    return cls


def _type_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def qualified_name(f):
    """'module.qualname' of a C callable: 'math.sqrt', 'numpy.ndarray.dot', 'builtins.float.__mul__'."""
    if isinstance(f, np.ufunc):
        return f"numpy.{f.__name__}"
    name = getattr(f, "__name__", type(f).__name__)
    objclass = getattr(f, "__objclass__", None)
    owner = getattr(f, "__self__", None)
    if objclass is not None:
        return f"{_type_name(_owner(objclass, name))}.{name}"
    if owner is not None and not isinstance(owner, types.ModuleType):
        if isinstance(owner, np.ufunc):
            return f"numpy.{owner.__name__}.{name}"
        cls = owner if isinstance(owner, type) else type(owner)
        return f"{_type_name(_owner(cls, name))}.{name}"
    module = getattr(f, "__module__", None) or getattr(owner, "__name__", "?")
    return f"{module}.{name}"


def _is_python_type(cls):
    """A class defined by a class statement (a heap type), outside the numeric modules."""
    return bool(cls.__flags__ & (1 << 9)) and not cls.__module__.startswith(NUMERIC_MODULES)


def judge(f):
    """(verdict, name) for a callable: ALLOW, CHECK (arithmetic, checked on the floats that
    take part), FORBID (a finding whatever the arguments) or PYTHON (Python code: checked
    as it runs). Never hashes ``f`` (dataclass instances and other unhashables are callables too)."""
    if isinstance(f, types.FunctionType):
        return PYTHON, f.__qualname__
    if isinstance(f, types.MethodType):
        if isinstance(f.__func__, types.FunctionType):
            return PYTHON, f.__func__.__qualname__
        return judge_name(qualified_name(f))
    if isinstance(f, functools.partial):
        verdict, name = judge(f.func)
        return verdict, f"functools.partial({name})"
    if isinstance(f, np.ufunc):
        return (ALLOW if f in guard.ALLOWED_FLOAT_UFUNCS else CHECK), qualified_name(f)
    if isinstance(getattr(f, "__self__", None), np.ufunc):
        return (ALLOW if f.__self__ in guard.ALLOWED_FLOAT_UFUNCS else CHECK), qualified_name(f)
    kind = type(f)
    if kind.__module__.startswith("numba"):
        from numba.core.dispatcher import Dispatcher
        if isinstance(f, Dispatcher):
            return ALLOW, f"numba kernel {f.py_func.__qualname__}"    # the static layer's
        return FORBID, f"Numba entry point outside Dispatcher.__call__ ({kind.__qualname__})"
    if isinstance(f, type):       # a class: its construction
        name = _type_name(f)
        if f.__module__.startswith(NUMERIC_MODULES):
            return FORBID, name
        if _is_python_type(f):
            return PYTHON, name       # its __new__/__init__ run as checked Python code
        if name in DATA_TYPES or name in FLOAT_TYPES:
            return ALLOW, name        # a conversion or a container
        return FORBID, f"unknown C type {name}"
    implementation = getattr(f, "_implementation", None)      # numpy's array-function dispatcher
    if isinstance(implementation, types.FunctionType):
        return PYTHON, f"{f.__module__}.{f.__name__}"
    wrapped = getattr(f, "__wrapped__", None)                  # functools.lru_cache and kin
    if kind.__module__ == "functools" and wrapped is not None:
        return judge(wrapped)
    if isinstance(kind.__dict__.get("__call__"), types.FunctionType) or (
            _is_python_type(kind) and isinstance(getattr(kind, "__call__", None), types.FunctionType)):
        return PYTHON, _type_name(kind)
    return judge_name(qualified_name(f))


def judge_name(name):
    if name.startswith(NUMERIC_MODULES) or name.split(".")[0] == "cmath":
        return FORBID, name
    if name in ALLOWED:
        return ALLOW, name
    if name in CHECKED:
        return CHECK, name
    owner, _, method = name.rpartition(".")
    if method in ARITHMETIC:
        return CHECK, name
    if owner in DATA_TYPES:
        return ALLOW, name
    if owner in FLOAT_TYPES:
        return (ALLOW if method in FLOAT_METHODS else CHECK), name
    return FORBID, f"unknown C callable {name}"


def sees_guarded(f):
    """True when the dynamic layer sees ``f`` applied to a guarded array (a ufunc, a ufunc
    method or a numpy function that dispatches ``__array_function__``)."""
    return (isinstance(f, np.ufunc) or isinstance(getattr(f, "__self__", None), np.ufunc)
            or hasattr(f, "_implementation"))


def audited_type(*args):
    """``type`` as the audited code should see it: a guarded array is an ndarray, so code
    that tests ``type(x) is np.ndarray`` takes the branch it takes outside the audit."""
    if len(args) == 1 and type(args[0]) is guard.GuardedArray:
        return np.ndarray
    return type(*args)


class Watch:
    """Context manager: the profile hook that checks every Python frame and C call."""

    def __init__(self, instrumented):
        self.instrumented = instrumented
        self.rehearsing = False

    def _profile(self, frame, event, arg):
        recorder = guard._recorder
        if recorder is None or guard._quiet:
            return
        try:
            self._check(recorder, frame, event, arg)
        except Exception as err:       # raising here would stop the watch: a finding instead
            recorder.add("python", f"audit watch failed: {type(err).__name__}: {err}",
                         f"{short_path(frame.f_code.co_filename)}:{frame.f_lineno}")

    def _check(self, recorder, frame, event, arg):
        code = frame.f_code
        if event == "call":
            if self.instrumented.covers(code) or _trusted(code):
                return
            self.instrumented.instrument_file(code.co_filename)
            if not self.rehearsing:
                caller = frame.f_back
                where = (f"{short_path(caller.f_code.co_filename)}:{caller.f_lineno}"
                         if caller is not None else "<unknown>")
                recorder.add("python", "code ran uninstrumented",
                             f"{short_path(code.co_filename)}:{code.co_firstlineno} "
                             f"{code.co_qualname}", f"called from {where}")
        elif event == "c_call" and not self.rehearsing:
            if self.instrumented.covers(code) or _trusted(code):
                return      # instrumented code's calls are judged by callee, with their arguments
            verdict, name = judge(arg)
            if verdict in (CHECK, FORBID):
                recorder.add("python", f"C call {name} from uninstrumented code",
                             f"{short_path(code.co_filename)}:{frame.f_lineno} in "
                             f"{code.co_name}")

    def __enter__(self):
        # no garbage collection inside the watch: gc.callbacks that other libraries register
        # (hypothesis's gc timer) would run wherever a collection happens to fall, as findings
        # that depend on what ran before in the process rather than on the step
        self.gc_was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        self.previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self.previous)
        if self.gc_was_enabled:
            gc.enable()
        return False


def _trusted(code):
    """The audit's own code; the import machinery for modules already imported (``from
    package import name`` runs it; a module's own code that runs is still a finding); and
    the methods ``dataclasses`` generates from strings (field assignment, comparison, repr:
    no arithmetic; what they call, ``__post_init__`` or a default factory, is checked); and
    the ``__new__`` that ``collections.namedtuple`` generates from a string
    (``lambda _cls, a, b: _tuple_new(_cls, (a, b))``: it builds the tuple, nothing else)."""
    filename = code.co_filename
    namedtuple_new = (code.co_name == "<lambda>" and code.co_names == ("_tuple_new",)
                      and code.co_varnames[:1] == ("_cls",))
    return (filename.startswith(_AUDIT) or filename.startswith("<frozen importlib")
            or filename == "<string>" and (code.co_qualname.startswith("__create_fn__.<locals>.")
                                           or namedtuple_new))

