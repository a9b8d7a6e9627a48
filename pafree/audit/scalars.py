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

Project files are rewritten when the audit starts; any other file (numpy's
Python functions, the standard library, frozen modules through their source)
when the closed-world watch (world.py) first sees its code run. Code without
source the audit can read and match (``exec`` strings, dataclass-generated
methods, files edited since import, Numba-held ``py_func``) is never
instrumented: when it runs, the watch reports it. An operation on a Tensor is
not itself arithmetic here: its operator methods are Python code, checked in
turn; an operator on another type whose implementation is C (``Decimal``) is a
finding.
"""
import ast
import builtins
import copy
import functools
import gc
import math
import operator
import os
import sys
import types

import numpy as np

from . import guard, world
from .report import _AUDIT, in_scope, reached_from, short_path

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
        "hypot", "dist", "fmod", "remainder", "sin", "cos", "tan", "asin", "acos",
        "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc",
        "gamma", "lgamma", "degrees", "radians", "sumprod") if hasattr(math, n)]
    + [(f"operator.{n}", getattr(operator, n)) for n in (
        "mul", "truediv", "floordiv", "mod", "pow", "matmul",
        "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul")]
    + [("pow", builtins.pow), ("divmod", builtins.divmod), ("round(x, ndigits)", _round_ndigits)])}

SITES = []       # site id -> (place, source text)
TWINS = {}       # id(function Numba also compiles) -> its instrumented twin, while instrumented


def _numeric(x):
    return isinstance(x, (int, float, complex, np.generic, np.ndarray))


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"ndarray[{x.dtype}]"
    return type(x).__name__


def _record(op, site):
    """Record ``op`` at a site; in library code, with the project line that led there."""
    place, text = SITES[site]
    guard.quietly(lambda: guard._recorder.add("scalar", op, place, reached_from(place, text)))


def _check(op, operands, result, site, guard_sees=True):
    """Record ``op`` at ``site`` if a float took part.

    A float took part when a numeric operand is a float, or a numeric operand gave a
    float result (``1 / 2``, ``math.sqrt(4)``). Guarded arrays are left to the dynamic
    layer where it sees the operation (``guard_sees``), and so is the work inside a
    numpy function it already recorded.
    """
    if guard._depth:
        return
    numbers = [v for v in guard.flat(operands) if _numeric(v)]
    if guard_sees and any(isinstance(v, guard.GuardedArray) for v in numbers + [result]):
        return
    if any(guard.is_float(v) for v in numbers) or (numbers and guard.is_float(result)):
        _record(f"{op} on {', '.join(_describe(v) for v in numbers)}", site)


# Operands of * / % ... that repeat or format (list * n, "%d" % n): not arithmetic.
_SEQUENCES = (str, bytes, bytearray, list, tuple)
_DUNDERS = {"*": "mul", "/": "truediv", "//": "floordiv", "%": "mod", "**": "pow", "@": "matmul"}


def _python_operator(kind, sym):
    """True when Python code implements ``sym`` for ``kind`` (checked as it runs)."""
    name = _DUNDERS[sym.rstrip("=")]
    return any(isinstance(getattr(kind, f"__{p}{name}__", None), types.FunctionType)
               for p in ("", "r", "i"))


def _check_operator(sym, operands, result, site):
    """An operator on numbers is checked for floats; on other objects its implementation
    must be Python code (a Tensor's) or sequence repetition/formatting, else a C type
    multiplies out of sight (``Decimal``) and that is a finding."""
    others = [type(v) for v in operands if not _numeric(v)]
    if not others:
        _check(sym, operands, result, site)
    elif not all(issubclass(k, _SEQUENCES) for k in others) and not any(
            _python_operator(k, sym) for k in others):
        _record(f"{sym} on {', '.join(type(v).__name__ for v in operands)} "
                f"(a C implementation)", site)


_SYMBOLS = {"mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
            "matmul": "@", "divmod": "//"}


def _operator_symbol(name):
    """The operator a callable named like ``_operator.imul`` or ``float.__rtruediv__`` computes."""
    base = name.rpartition(".")[2]
    if base.startswith("__"):
        base, prefix = base.strip("_"), "ri"
    elif name.startswith("_operator."):
        prefix = "i"
    else:
        return None
    if base[:1] in prefix and base[1:] in _SYMBOLS:
        base = base[1:]
    return _SYMBOLS.get(base)


def _callables_passed(args, kwargs):
    """Names of the C callables among the arguments that are not allowed (operator.mul
    handed to map or functools.reduce: C code calls it where no hook sees it)."""
    names = []
    for value in list(args) + list(kwargs.values()):
        if callable(value) and not isinstance(value, type):
            verdict, name = world.judge(value)
            if verdict in (world.CHECK, world.FORBID):
                names.append(name)
    return names


class _Hook:
    """What rewritten code calls; does the operation exactly as written, then checks it."""

    @staticmethod
    def binop(sym, a, b, site):
        result = _BINARY[sym](a, b)
        if guard._recorder is not None and not guard._quiet:
            _check_operator(sym, (a, b), result, site)
        return result

    @staticmethod
    def iop(sym, a, b, site):
        result = _INPLACE[sym](a, b)
        if guard._recorder is not None and not guard._quiet:
            _check_operator(sym + "=", (a, b), result, site)
        return result

    round_ndigits = staticmethod(_round_ndigits)

    @staticmethod
    def callee(f, site):
        """``f`` itself when calling it is allowed or runs Python code (checked as it runs);
        else a stand-in that calls it and records the call if a float took part."""
        if guard._recorder is None or guard._quiet:
            return f
        if f is type:
            return world.audited_type
        if world.runs_quietly(f):
            return functools.partial(guard.quietly, f)
        twin = TWINS.get(id(f))
        if twin is not None:          # Numba compiles f's own code; Python runs the twin
            return twin
        name = _FORBIDDEN_CALLS.get(id(f))
        verdict, judged = (world.CHECK, name) if name else world.judge(f)
        if verdict == world.PYTHON:
            return f
        if verdict == world.FORBID:
            _record(judged, site)
            return f
        if verdict == world.ALLOW and judged not in world.HIGHER_ORDER:
            return f
        owner = getattr(f, "__self__", None)
        bound = () if owner is None or isinstance(owner, (types.ModuleType, np.ufunc)) else (owner,)
        sees = world.sees_guarded(f)

        def checked(*args, **kwargs):
            if verdict == world.ALLOW:          # a higher-order function: what does it call?
                for passed in _callables_passed(args, kwargs):
                    _record(f"{passed} passed by value to {judged}", site)
                return f(*args, **kwargs)
            result = f(*args, **kwargs)
            if guard._recorder is not None:
                operands = bound + args + tuple(kwargs.values())
                if sym:
                    _check_operator(sym, operands, result, site)
                else:
                    _check(judged, operands, result, site, sees)
            return result
        sym = _operator_symbol(judged)
        return checked


_HOOK = _Hook()


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
        self.left_as_written = []    # (first, last) line of each function Numba compiles
        self.jit_twins = []          # (rewritten copy, enclosing functions' names) of those,
                                     # for Python calls of them

    def _site(self, node):
        text = ast.get_source_segment(self.source, node) or ""
        SITES.append((f"{self.filename}:{node.lineno} in {self.scope[-1]}", text))
        return ast.Constant(len(SITES) - 1)

    def _hook(self, method, args, node):
        func = ast.Attribute(ast.Name(HOOK, ast.Load()), method, ast.Load())
        return ast.copy_location(ast.Call(func, args, []), node)

    def visit_FunctionDef(self, node):
        if _jit_decorated(node):   # Numba compiles this source: leave it exactly as written
            first = node.decorator_list[0]
            self.left_as_written.append((first.lineno, node.end_lineno))
            twin = copy.deepcopy(node)         # ... and rewrite a copy for Python's calls
            twin.decorator_list = [ast.copy_location(ast.Name("_", ast.Load()), first)]
            enclosing = self.scope[1:]
            self.scope.append(node.name)
            self.jit_twins.append((self.generic_visit(twin), enclosing))
            self.scope.pop()
            return node
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


def source_path(filename):
    """The file holding the source of code compiled as ``filename`` (frozen standard
    library modules, ``<frozen posixpath>``, through their module's file), or None."""
    if filename.startswith("<frozen "):
        module = sys.modules.get(filename[len("<frozen "):-1])
        return getattr(module, "__file__", None)
    return None if filename.startswith("<") or filename.startswith(_AUDIT) else filename


_CACHE = {}      # filename -> (mtime, pairs, rewritten code objects)


def _code_tree(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_tree(const)


def _rewritten_codes(filename):
    """(pairs, covered, twins) of a file: (original, rewritten) code pairs of every function,
    keyed by name and line (several lambdas may share a line: the original code tells them
    apart); the rewritten code objects that really are rewritten (not the module's own code
    nor functions left as written for Numba); and the rewritten code of the functions Numba
    compiles, by name and line. OSError when the source cannot be read."""
    path = source_path(filename)
    if path is None:
        raise OSError(f"no source for {filename}")
    mtime = os.path.getmtime(path)
    cached = _CACHE.get(filename)
    if cached and cached[0] == mtime:
        return cached[1:]
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    tree = ast.parse(source, filename)
    original = compile(tree, filename, "exec", dont_inherit=True)
    rewriter = _Rewriter(filename, source)
    rewritten = rewriter.visit(tree)
    ast.fix_missing_locations(rewritten)
    new = compile(rewritten, filename, "exec", dont_inherit=True)
    pairs, covered, twins = {}, [], {}
    # both trees hold the same functions in the same order: the rewriting adds none
    for old_code, new_code in zip(_code_tree(original), _code_tree(new)):
        key = (old_code.co_qualname, old_code.co_firstlineno)
        if key == (new_code.co_qualname, new_code.co_firstlineno):
            pairs.setdefault(key, []).append((old_code, new_code))
    for code in _code_tree(new):
        line = code.co_firstlineno
        if code is not new and not any(a <= line <= b for a, b in rewriter.left_as_written):
            covered.append(code)
    free = {(c.co_name, c.co_firstlineno): c.co_freevars for c in _code_tree(original)}
    for node, enclosing in rewriter.jit_twins:  # compiled alone: same name, lines, free variables
        first = node.decorator_list[0].lineno
        code = _compile_twin(node, enclosing, free.get((node.name, first), ()), filename)
        twins[(code.co_qualname, code.co_firstlineno)] = code
        covered.extend(_code_tree(code))
    _CACHE[filename] = (mtime, pairs, covered, twins)
    return pairs, covered, twins


def _compile_twin(node, enclosing, freevars, filename):
    """The code of the function ``node`` compiled alone; a function nested in others (a
    factory's closure) inside stand-ins of them that bind its free variables, so that the
    code has the original's qualified name and free variables (its closure fits)."""
    body = [node]
    if enclosing:
        body.insert(0, ast.Assign([ast.Name(v, ast.Store()) for v in freevars] or
                                  [ast.Name("_", ast.Store())], ast.Constant(None)))
    for name in reversed(enclosing):
        body = [ast.FunctionDef(name, ast.arguments([], [], None, [], [], None, []), body, [],
                                None, None)]
    module = ast.fix_missing_locations(ast.Module(body, []))
    code = compile(module, filename, "exec", dont_inherit=True)
    for _ in range(len(enclosing) + 1):
        (code,) = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return code


def _dispatcher_codes(objects):
    """ids of the code objects Numba dispatchers hold (kernels' ``py_func``): Numba compiles
    them, so they keep their code (functions under a Numba decorator in their source, the
    ``register_jitable`` helpers among them, are known from the source)."""
    from numba.core.dispatcher import _DispatcherBase
    return {id(obj.py_func.__code__) for obj in objects
            if issubclass(type(obj), _DispatcherBase)}   # type(): weak proxies may be dead


class Instrumented:
    """Context manager: functions run rewritten code inside, their own code after.

    Project files are rewritten on entry; any other file when ``instrument_file`` is
    asked for it (the closed-world watch does, when it first sees the file's code run).
    ``covers(code)`` says whether a code object is a rewritten one. A function Numba also
    compiles (a kernel's ``py_func``, a ``register_jitable`` helper) keeps its own code, which
    Numba reads; instrumented code that calls it from Python calls an instrumented twin.
    """

    def __enter__(self):
        objects = gc.get_objects()
        self.compiled = _dispatcher_codes(objects)
        self.functions = {}       # filename -> live functions compiled from it
        for f in objects:
            if type(f) is types.FunctionType:
                self.functions.setdefault(f.__code__.co_filename, []).append(f)
        self.replaced = []
        self.unmatched = []       # functions whose loaded code differs from their source
        self.files = set()
        self.codes = set()        # ids of the rewritten code objects (kept alive by _CACHE)
        for filename in list(self.functions):
            if in_scope(filename):
                self.instrument_file(filename)
        return self

    def covers(self, code):
        return id(code) in self.codes

    def instrument_file(self, filename):
        """Give every live function compiled from ``filename`` its rewritten code."""
        if filename in self.files:
            return
        self.files.add(filename)
        try:
            pairs, covered, twins = _rewritten_codes(filename)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return
        self.codes.update(id(code) for code in covered)
        for f in self.functions.get(filename, ()):
            code = f.__code__
            key = (code.co_qualname, code.co_firstlineno)
            if id(code) in self.compiled or key in twins:
                new = twins.get(key)
                if new is not None and new.co_freevars == code.co_freevars:
                    f.__globals__.setdefault(HOOK, _HOOK)
                    twin = types.FunctionType(new, f.__globals__, f.__name__, f.__defaults__,
                                              f.__closure__)
                    twin.__kwdefaults__, twin.__qualname__ = f.__kwdefaults__, f.__qualname__
                    TWINS[id(f)] = twin
                continue
            new = next((n for old, n in pairs.get(key, ())
                        if old == code and len(n.co_freevars) == len(code.co_freevars)), None)
            if new is None:
                if in_scope(filename):
                    self.unmatched.append(f"{short_path(filename)}:{code.co_firstlineno} "
                                          f"{code.co_qualname}")
                continue
            f.__globals__.setdefault(HOOK, _HOOK)
            f.__code__ = new
            self.replaced.append((f, code))

    def __exit__(self, *exc):
        for f, code in self.replaced:
            f.__code__ = code
        TWINS.clear()
        return False
