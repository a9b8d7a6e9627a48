"""Scalar layer: Python-level float arithmetic in project code, checked as it runs.

While an audit runs, every Python function of the project (any source file
outside the Python installation and site-packages: pafree and the code that
calls it, tests included; never the audit itself) runs a rewritten copy of its
own source in which
- each ``*``, ``/``, ``//``, ``%``, ``**``, ``@`` (and ``*=``, ``/=``, ...) goes
  through ``binop``, which does the operation and records it when a Python or
  numpy float (scalar or plain array) took part: hyper-parameter math, bias
  correction, schedules, scale factors, loss averaging;
- each call goes through ``callee``, which checks calls of ``math.sqrt``,
  ``math.exp``, ``pow``, ``operator.mul``, numpy ufuncs that multiply and
  numpy functions such as ``np.dot``, ``np.mean`` on float arguments.
The rewritten code replaces ``function.__code__`` of every live function object
(and closures made during the step come from rewritten code), and the original
code is put back afterwards. Line numbers are kept, so findings name the line.

Reach, honestly: only Python source the audit can read and match to the
loaded code; not code Numba compiles (kernels, ``register_jitable`` helpers:
the static layer scans those), not code built at run time from strings
(``exec``, dataclass-generated methods), not C extensions or library code
(the dynamic layer follows guarded arrays into numpy's Python code). An
operation on a Tensor is not itself arithmetic here: its operator methods are
project code and are checked in turn.
"""
import ast
import builtins
import copy
import gc
import math
import operator
import os
import site
import statistics
import sysconfig
import types

import numpy as np

from . import guard
from .report import _AUDIT, short_path

HOOK = "__pafree_audit__"     # module global the rewritten code calls

_OPS = {ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
        ast.MatMult: "@"}
_BINARY = {"*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
           "%": operator.mod, "**": operator.pow, "@": operator.matmul}
_INPLACE = {"*": operator.imul, "/": operator.itruediv, "//": operator.ifloordiv,
            "%": operator.imod, "**": operator.ipow, "@": operator.imatmul}

# Decorators whose function Numba compiles from source: such code is left as written.
_JIT_DECORATORS = {"jit", "njit", "cpu_kernel", "register_jitable", "vectorize", "guvectorize",
                   "stencil", "overload", "overload_method", "intrinsic", "cfunc"}


def _round_ndigits(x, ndigits=None):
    """round(x, n) scales by a power of ten: rewritten code calls this so it is checked."""
    return round(x, ndigits)


# Callables that compute a float multiply, divide, root, exp, log or power.
_FORBIDDEN_CALLS = {id(f): name for name, f in (
    [(f"math.{n}", getattr(math, n)) for n in (
        "sqrt", "cbrt", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "pow", "prod",
        "hypot", "dist", "fmod", "remainder", "ldexp", "sin", "cos", "tan", "asin", "acos",
        "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc",
        "gamma", "lgamma", "degrees", "radians", "sumprod") if hasattr(math, n)]
    + [(f"operator.{n}", getattr(operator, n)) for n in (
        "mul", "truediv", "floordiv", "mod", "pow", "matmul",
        "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul")]
    + [(f"statistics.{n}", getattr(statistics, n)) for n in (
        "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "pstdev", "pvariance",
        "stdev", "variance")]
    + [("pow", builtins.pow), ("divmod", builtins.divmod), ("round(x, ndigits)", _round_ndigits)])}

SITES = []       # site id -> (place, source text)


def _numeric(x):
    return isinstance(x, (int, float, complex, np.generic, np.ndarray))


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"ndarray[{x.dtype}]"
    return type(x).__name__


def _check(op, operands, result, site, arithmetic):
    """Record ``op`` at ``site`` if a float took part (guarded arrays are the dynamic layer's).

    A float took part when a numeric operand is a float, or a numeric operand gave a
    float result (``1 / 2``, ``math.sqrt(4)``).
    """
    if arithmetic and not all(_numeric(v) for v in operands):
        return          # str % args, list * n, Tensor * x: not float arithmetic by itself
    numbers = [v for v in guard.flat(operands) if _numeric(v)]
    if any(isinstance(v, guard.GuardedArray) for v in numbers + [result]):
        return
    if any(guard.is_float(v) for v in numbers) or (numbers and guard.is_float(result)):
        place, text = SITES[site]
        kinds = ", ".join(_describe(v) for v in numbers)
        guard._recorder.add("scalar", f"{op} on {kinds}", place, text)


class _Hook:
    """What rewritten code calls; does the operation exactly as written, then checks it."""

    @staticmethod
    def binop(sym, a, b, site):
        result = _BINARY[sym](a, b)
        if guard._recorder is not None:
            _check(sym, (a, b), result, site, arithmetic=True)
        return result

    @staticmethod
    def iop(sym, a, b, site):
        result = _INPLACE[sym](a, b)
        if guard._recorder is not None:
            _check(sym + "=", (a, b), result, site, arithmetic=True)
        return result

    round_ndigits = staticmethod(_round_ndigits)

    @staticmethod
    def callee(f, site):
        if guard._recorder is None:
            return f
        name = _forbidden_name(f)
        if name is None:
            return f

        def checked(*args, **kwargs):
            result = f(*args, **kwargs)
            if guard._recorder is not None:
                _check(name, args + tuple(kwargs.values()), result, site,
                       arithmetic=name.startswith("operator."))
            return result
        return checked


_HOOK = _Hook()


def _forbidden_name(f):
    name = _FORBIDDEN_CALLS.get(id(f))
    if name is not None:
        return name
    if isinstance(f, np.ufunc):
        return None if f in guard.ALLOWED_FLOAT_UFUNCS else f"numpy.{f.__name__}"
    if guard.multiplying_function(f):
        return f"{f.__module__}.{f.__name__}"
    owner = getattr(f, "__self__", None)
    if isinstance(owner, np.ufunc) and owner not in guard.ALLOWED_FLOAT_UFUNCS:
        return f"numpy.{owner.__name__}.{f.__name__}"
    if (isinstance(owner, np.ndarray) and not isinstance(owner, guard.GuardedArray)
            and getattr(f, "__name__", "") in guard.MULTIPLYING_METHODS and guard.is_float(owner)):
        return f"ndarray.{f.__name__}"
    return None


def _pure(node):
    """True for expressions that can be evaluated twice without side effects."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, (ast.Attribute, ast.Starred)):
        return _pure(node.value)
    if isinstance(node, ast.Subscript):
        return _pure(node.value) and _pure(node.slice)
    if isinstance(node, ast.Slice):
        return all(p is None or _pure(p) for p in (node.lower, node.upper, node.step))
    if isinstance(node, ast.Tuple):
        return all(_pure(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        return _pure(node.operand)
    return False


def _jit_decorated(node):
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in _JIT_DECORATORS:
            return True
    return False


class _Rewriter(ast.NodeTransformer):
    def __init__(self, filename, source):
        self.filename = short_path(filename)
        self.source = source
        self.scope = ["<module>"]

    def _site(self, node):
        text = ast.get_source_segment(self.source, node) or ""
        SITES.append((f"{self.filename}:{node.lineno} in {self.scope[-1]}", text))
        return ast.Constant(len(SITES) - 1)

    def _hook(self, method, args, node):
        func = ast.Attribute(ast.Name(HOOK, ast.Load()), method, ast.Load())
        return ast.copy_location(ast.Call(func, args, []), node)

    def visit_FunctionDef(self, node):
        if _jit_decorated(node):
            return node           # Numba compiles this source: leave it exactly as written
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_BinOp(self, node):
        self.generic_visit(node)
        sym = _OPS.get(type(node.op))
        if sym is None:
            return node
        return self._hook("binop", [ast.Constant(sym), node.left, node.right, self._site(node)],
                          node)

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        sym = _OPS.get(type(node.op))
        if sym is None or not _pure(node.target):
            return node
        load = copy.deepcopy(node.target)
        load.ctx = ast.Load()
        value = self._hook("iop", [ast.Constant(sym), load, node.value, self._site(node)], node)
        return ast.copy_location(ast.Assign([node.target], value), node)

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        if (isinstance(func, ast.Name) and func.id == "round"
                and len(node.args) + len(node.keywords) > 1):
            # round(x, n) scales by a power of ten: checked like a multiply
            func = ast.Attribute(ast.Name(HOOK, ast.Load()), "round_ndigits", ast.Load())
        node.func = self._hook("callee", [func, self._site(node)], node.func)
        return node


def _system_dirs():
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(os.path.abspath(d) + os.sep for d in dirs)


_SYSTEM = _system_dirs()


def in_scope(filename):
    """Project source: a .py file outside the Python installation and the audit package."""
    if not filename.endswith(".py"):
        return False
    path = os.path.abspath(filename)
    return not path.startswith(_SYSTEM) and not path.startswith(_AUDIT)


_CACHE = {}      # filename -> (mtime, {(qualname, firstlineno): (original code, rewritten code)})


def _code_tree(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_tree(const)


def _rewritten_codes(filename):
    """(original, rewritten) code pairs of every function in a file, keyed by name and line
    (several lambdas may share a line: the original code tells them apart)."""
    mtime = os.path.getmtime(filename)
    cached = _CACHE.get(filename)
    if cached and cached[0] == mtime:
        return cached[1]
    with open(filename, encoding="utf-8") as fh:
        source = fh.read()
    tree = ast.parse(source, filename)
    original = compile(tree, filename, "exec", dont_inherit=True)
    rewritten = _Rewriter(filename, source).visit(tree)
    ast.fix_missing_locations(rewritten)
    new = compile(rewritten, filename, "exec", dont_inherit=True)
    pairs = {}
    # both trees hold the same functions in the same order: the rewriting adds none
    for old_code, new_code in zip(_code_tree(original), _code_tree(new)):
        key = (old_code.co_qualname, old_code.co_firstlineno)
        if key == (new_code.co_qualname, new_code.co_firstlineno):
            pairs.setdefault(key, []).append((old_code, new_code))
    _CACHE[filename] = (mtime, pairs)
    return pairs


def _rewritten(code):
    """The rewritten version of a live code object, or None if its source no longer matches."""
    try:
        pairs = _rewritten_codes(code.co_filename)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for old, new in pairs.get((code.co_qualname, code.co_firstlineno), ()):
        if old == code and len(new.co_freevars) == len(code.co_freevars):
            return new
    return None


def _numba_compiled_codes(objects):
    """Code objects Numba compiles from Python source: kernels' and register_jitable functions."""
    from numba.core.dispatcher import _DispatcherBase
    from numba.core.typing.templates import builtin_registry
    codes = {f.__code__ for f, _ in builtin_registry.globals if isinstance(f, types.FunctionType)}
    codes.update(obj.py_func.__code__ for obj in objects
                 if issubclass(type(obj), _DispatcherBase))   # type(): weak proxies may be dead
    return codes


class Instrumented:
    """Context manager: project functions run rewritten code inside, their own code after."""

    def __enter__(self):
        objects = gc.get_objects()
        compiled = _numba_compiled_codes(objects)
        self.replaced = []
        self.unmatched = []       # functions whose loaded code differs from their source
        for f in objects:
            if type(f) is not types.FunctionType:
                continue
            code = f.__code__
            if code in compiled or not in_scope(code.co_filename):
                continue
            new = _rewritten(code)
            if new is None:
                self.unmatched.append(f"{short_path(code.co_filename)}:{code.co_firstlineno} "
                                      f"{code.co_qualname}")
                continue
            f.__globals__.setdefault(HOOK, _HOOK)
            f.__code__ = new
            self.replaced.append((f, code))
        return self

    def __exit__(self, *exc):
        for f, code in self.replaced:
            f.__code__ = code
        return False
