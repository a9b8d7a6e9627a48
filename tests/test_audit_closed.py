"""The audit's Python layers as a closed world (issue 13): one table-driven mutation per class
of hole, each caught with the place named; exact bit operations pass cleanly.

Each mutation is a small function, audited alone with ``Audit().run`` (after a rehearsal,
as ``pafree audit`` does, so library code is instrumented before the audited call). Run
against the audit of ee6dd6a, every case in MUTATIONS and FALSE_ALARMS fails there.
"""
import ctypes
import ctypes.util
import decimal
import fractions
import functools
import gc
import importlib
import inspect
import json
import math
import operator
import os
import random
import statistics
import sys
import cmath
import collections
from dataclasses import dataclass

import numba
import numpy as np
import pytest
import scipy.special

from pafree.audit import guard
from pafree.audit.step import Audit

HERE = "tests/test_audit_closed.py"


def audited(fn, *args):
    """The report of auditing ``fn(*args)`` alone; arrays among the arguments are guarded."""
    with Audit() as audit:
        rehearse = getattr(audit, "rehearse", None)
        if rehearse is not None:
            rehearse(fn, *[np.copy(a) if isinstance(a, np.ndarray) else a for a in args])
        audit.run(fn, *args)
    return audit.report()


def mutation_line(fn):
    """'tests/test_audit_closed.py:LINE' of the line marked MUTATION in ``fn``."""
    lines, start = inspect.getsourcelines(fn)
    (offset,) = [i for i, line in enumerate(lines) if "# MUTATION" in line]
    return f"{HERE}:{start + offset}"


def floats():
    return np.array([1.5, -2.0, 3.0], np.float32)


# --- 1. library code on plain arrays, base-class descriptors, numpy's C entry points ------

def base_class_descriptor(g):
    return np.ndarray.dot(g, g)                              # MUTATION


def library_helper_on_plain_arrays(g):
    return scipy.special.softmax(g)                          # MUTATION


def numpy_c_entry_point(g):
    return np._core._multiarray_umath.c_einsum("i,i->", g, g)   # MUTATION


# --- 2. dunder calls and forbidden callables passed by value ------------------------------

def explicit_float_dunder(x):
    return float.__mul__(x, 3.0)                             # MUTATION


def bound_dunder(x):
    return x.__truediv__(3.0)                                # MUTATION


def partial_of_mul(x):
    return functools.partial(operator.mul, 2.0)(x)          # MUTATION


def reduce_by_mul(x):
    return functools.reduce(operator.mul, [x, x, x])         # MUTATION


def ufunc_call_descriptor(g):
    return np.ufunc.__call__(np.multiply, np.asarray(g).copy(), 2.0)   # MUTATION


# --- 3. numeric types and modules, numpy functions missing from the lists ----------------

def decimal_multiply(x):
    return float(decimal.Decimal(x) * decimal.Decimal("0.5"))   # MUTATION


def fraction_multiply(x):
    return float(fractions.Fraction(3, 2) * 2)               # MUTATION


def cmath_root(x):
    return cmath.sqrt(x).real                                # MUTATION


def statistics_regression(x):
    return statistics.linear_regression([1, 2, 3], [x, x + x, 3.0])   # MUTATION


def random_draw(x):
    return x + random.random()                               # MUTATION


def numpy_linspace(x):
    return np.linspace(0.0, x, 5)                            # MUTATION


def numpy_round_digits(g):
    return np.round(np.asarray(g).copy(), 2)                 # MUTATION


def numpy_emath(x):
    return np.emath.sqrt(x)                                  # MUTATION


# --- 4. Python code that ran without the scalar rewrite ----------------------------------

def _module_file(tmp_path, name, text, suffix=".py"):
    path = tmp_path / f"{name}{suffix}"
    path.write_text(text)
    return path


def imported_inside(name):
    return importlib.import_module(name).scale(1.5)         # MUTATION


def _float_generator():
    x = 1.5
    while True:
        yield x * 2.0                                        # MUTATION


GENERATOR = _float_generator()            # created before any audit starts


def generator_made_before():
    return next(GENERATOR)


@numba.njit(cache=False)
def _numba_multiply(a, b):
    return a * b                                             # MUTATION


def dispatcher_py_func(x):
    return _numba_multiply.py_func(x, 3.0)


def jit(function):                        # merely named like Numba's decorator
    return function


@jit
def _fake_jit(a, b):
    return a * b                                             # MUTATION


def decorated_jit(x):
    return _fake_jit(x, 3.0)


def calls_module_function(module):
    return module.scale(1.5)


# --- 5. code that behaves differently because the audit changes array types --------------

def type_test(g):
    if type(g) is np.ndarray:
        return g * np.float32(2)                             # MUTATION
    return g


# --- 7. Numba entry points that bypass Dispatcher.__call__ --------------------------------

@numba.cfunc("float64(float64, float64)", cache=False)
def _cfunc_multiply(a, b):
    return a * b


def cfunc_pointer(x):
    return _cfunc_multiply.ctypes(x, 3.0)                    # MUTATION


def entry_point(x):
    return _numba_multiply.overloads[_numba_multiply.signatures[0]].entry_point(x, 3.0)  # MUTATION


def _code_place(fn):
    """How a finding names code that ran uninstrumented: 'file:first line qualname'."""
    return lambda: f"{HERE}:{fn.__code__.co_firstlineno} {fn.__qualname__}"


# class and case: (function, its arguments, the place a finding must name: by default the
# line marked MUTATION in the function, as the place or, in library code, the line it was
# reached from)
MUTATIONS = {
    "1 base-class descriptor": (base_class_descriptor, floats),
    "1 scipy helper on plain arrays": (library_helper_on_plain_arrays, floats),   # np.asarray
    "1 numpy C entry point": (numpy_c_entry_point, floats),
    "2 float.__mul__": (explicit_float_dunder, lambda: 1.5),
    "2 x.__truediv__(y)": (bound_dunder, lambda: 1.5),
    "2 partial(operator.mul)": (partial_of_mul, lambda: 1.5),
    "2 reduce(operator.mul)": (reduce_by_mul, lambda: 1.5),
    "2 np.ufunc.__call__": (ufunc_call_descriptor, floats),
    "3 decimal": (decimal_multiply, lambda: 1.5),
    "3 fractions": (fraction_multiply, lambda: 1.5),
    "3 cmath": (cmath_root, lambda: 2.0),
    "3 statistics": (statistics_regression, lambda: 1.5),
    "3 random": (random_draw, lambda: 1.5),
    "3 np.linspace": (numpy_linspace, lambda: 1.5),
    "3 np.round(x, n)": (numpy_round_digits, floats),
    "3 np.emath": (numpy_emath, lambda: 2.0),
    "4 generator made before": (generator_made_before, tuple, _code_place(_float_generator)),
    "4 dispatcher py_func": (dispatcher_py_func, lambda: 1.5,
                             lambda: mutation_line(_numba_multiply.py_func)),
    "4 decorator named jit": (decorated_jit, lambda: 1.5, lambda: mutation_line(_fake_jit)),
    "5 type(g) is np.ndarray": (type_test, floats),
    "7 cfunc pointer": (cfunc_pointer, lambda: 1.5),
    "7 overloads[sig].entry_point": (entry_point, lambda: 1.5),
}


def _arguments(make):
    made = make()
    return made if isinstance(made, tuple) else (made,)


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_mutation_is_caught_and_named(case):
    fn, make, *where = MUTATIONS[case]
    if fn is entry_point:
        _numba_multiply(1.5, 3.0)          # compile the signature whose entry point is called
    report = audited(fn, *_arguments(make))
    assert not report.ok, f"{case}: the audit saw nothing"
    place = where[0]() if where else mutation_line(fn)
    text = " | ".join(f"{f.op} at {f.where} {f.detail}" for f in report.findings)
    assert place in text, f"{case}: no finding names {place}: {text}"


def test_control_additions_and_data_movement_are_clean():
    def adds(g):
        h = np.concatenate([g, -g])[::2] + np.float32(1)
        return float(np.maximum(h, 0).sum()) - 1.5, len(sorted([3, 1])), math.floor(2.5)
    report = audited(adds, floats())
    assert report.ok, report.findings


def test_module_imported_inside_the_audited_region(tmp_path, monkeypatch):
    _module_file(tmp_path, "pafree_audit_fresh", "def scale(x):\n    return x * 2.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pafree_audit_fresh", raising=False)
    with Audit() as audit:
        audit.run(imported_inside, "pafree_audit_fresh")
    del sys.modules["pafree_audit_fresh"]
    report = audit.report()
    where = [f.where for f in report.findings]
    assert any(w.endswith("pafree_audit_fresh.py:1 <module>") for w in where), where
    assert any(w.endswith("pafree_audit_fresh.py:1 scale") for w in where), where


def test_module_without_py_suffix_is_instrumented(tmp_path):
    from importlib.machinery import SourceFileLoader
    from importlib.util import module_from_spec, spec_from_loader
    path = _module_file(tmp_path, "pafree_audit_text", "def scale(x):\n    return x * 2.5\n",
                        suffix=".txt")
    loader = SourceFileLoader("pafree_audit_text", str(path))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    report = audited(calls_module_function, module)
    assert [f.where for f in report.findings] == [f"{path}:2 in scale"]


def test_file_edited_after_import_is_a_finding_when_its_code_runs(tmp_path, monkeypatch):
    path = _module_file(tmp_path, "pafree_audit_edited", "def scale(x):\n    return x * 2.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("pafree_audit_edited")
    del sys.modules["pafree_audit_edited"]      # gone with the test: not left unmatched
    path.write_text("def scale(x):\n    return x + 2.5\n")
    os.utime(path, (1, 1))
    report = audited(calls_module_function, module)
    assert [f.op for f in report.findings] == ["code ran uninstrumented"]
    assert report.findings[0].where.endswith("pafree_audit_edited.py:1 scale")


# --- 8. exact bit operations, unhashable callables -----------------------------------------

def bit_operations(g):
    mantissa, exponent = np.frexp(g)
    m, e = math.frexp(1.5)
    return (np.ldexp(g, 3), mantissa, exponent, np.nextafter(g, np.float32(0)), np.spacing(g),
            np.copysign(g, -g), math.ldexp(m, e), math.nextafter(1.5, 0.0),
            math.copysign(1.5, -1.0), math.ulp(1.5))


@dataclass
class Scaler:                 # eq=True: instances are unhashable callables
    shift: float

    def __call__(self, x):
        return x + self.shift


def unhashable_callable(scaler, x):
    return scaler(x) + Scaler(0.25).shift      # a dataclass's generated __init__ runs too


Shape = collections.namedtuple("Shape", "rows cols")


def namedtuple_and_index_array(g):
    shape = Shape(*g.shape, 1)[:2]            # namedtuple's generated __new__ runs
    return np.fromiter(range(shape[0]), dtype=np.intp, count=shape[0]) + 1


FALSE_ALARMS = {"exact bit operations": (bit_operations, floats),
                "unhashable callable": (unhashable_callable, lambda: (Scaler(0.5), 1.5)),
                "namedtuple and fromiter": (namedtuple_and_index_array, floats)}


@pytest.mark.parametrize("case", sorted(FALSE_ALARMS))
def test_exact_operations_pass_cleanly(case):
    fn, make = FALSE_ALARMS[case]
    report = audited(fn, *_arguments(make))
    assert report.ok, report.findings


def garbage_cycles(g):
    for _ in range(10_000):           # well past the collector's first threshold (700)
        cycle = []
        cycle.append(cycle)           # only the collector frees it
    return g + g


# a gc callback as hypothesis's gc timer is: Python of another library, run by the collector
_hook = {}
exec(compile("def on_collection(phase, info):\n    pass\n", "another_library.py", "exec"), _hook)


def test_a_collection_inside_the_step_runs_no_callback_there():
    """gc.callbacks run wherever a collection falls: the watch collects first and keeps
    the collector off, so a step making cycles has no finding from another library's hook."""
    gc.callbacks.append(_hook["on_collection"])
    try:
        report = audited(garbage_cycles, *_arguments(floats))
    finally:
        gc.callbacks.remove(_hook["on_collection"])
    assert report.ok, report.findings
    assert gc.isenabled()


def test_bit_operations_still_compute_the_same():
    g = guard.guarded(floats())
    with Audit() as audit:
        got = audit.run(bit_operations, g)
    expected = bit_operations(floats())
    for a, b in zip(got, expected):
        assert np.array_equal(np.asarray(a), np.asarray(b))


# --- 7. the static layer: every call instruction of a kernel ------------------------------

@numba.njit(cache=False)
def _kernel_blas(a, b):
    return np.dot(a, b)


_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
_HYPOT = _LIBM.hypot
_HYPOT.restype, _HYPOT.argtypes = ctypes.c_double, (ctypes.c_double, ctypes.c_double)


@numba.njit(cache=False)
def _kernel_ctypes(a, b):
    return _HYPOT(a, b)


@pytest.mark.parametrize("kernel, args, expected", [
    (_kernel_blas, (np.ones((3, 3), np.float32), np.ones((3, 3), np.float32)), "call to numba_"),
    (_kernel_ctypes, (1.5, 2.0), "indirect call"),
], ids=["BLAS", "ctypes pointer"])
def test_kernel_calls_out_are_findings(kernel, args, expected):
    from pafree.audit.kernels import scan_dispatcher
    kernel(*args)
    counts, forbidden = scan_dispatcher(kernel)
    assert any(expected in line for line in forbidden), forbidden


def test_registered_kernels_call_only_known_functions():
    from pafree.audit.kernels import _texts, scan_calls
    from pafree.ops import cpu
    kernel = cpu.BINARY["pam"][0]
    kernel(np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int32), np.empty(4, np.int32))
    for signature in kernel.signatures:
        (_, ir), *_ = _texts(kernel, signature)[1]     # the IR, compiled here or from the cache
        offending, calls = scan_calls(ir)
        assert calls > 0 and offending == []


# --- 6 and 8: whole steps ------------------------------------------------------------------

TINY = {"batch_size": 4, "d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1,
        "run_steps": 20}          # warm-up: min(100, 20 // 10) = 2 steps


def test_schedule_points_cover_every_branch():
    import pafree.run as runs
    from pafree.audit.step import schedule_points
    run = runs.build("digits", "pa", 0, steps=1000, warmup=100)
    assert schedule_points(run) == [0, 99, 100, 550, 999]
    run = runs.build("digits", "pa", 0, steps=1000, warmup=0)
    assert schedule_points(run) == [0, 500, 999]


def test_advance_restores_the_state_of_a_real_run():
    import pafree.run as runs
    from pafree.audit.step import advance
    settings = {k: v for k, v in TINY.items() if k != "run_steps"}
    real = runs.build("digits", "pa", 0, steps=20, **settings)
    for t in range(3):
        real.train_step(real.batch(t))
    jumped = runs.build("digits", "pa", 0, steps=20, **settings)
    advance(jumped, 3)
    assert jumped.step == real.step == 3
    assert jumped.optimizer.step_count == real.optimizer.step_count
    for key in ("bias1", "bias2"):
        assert jumped.optimizer.state[key].tobytes() == real.optimizer.state[key].tobytes()
    assert jumped.optimizer.current_lr().tobytes() == real.optimizer.current_lr().tobytes()


def test_a_multiply_after_the_warm_up_is_caught_at_the_first_step_after_it(monkeypatch):
    from pafree import optim
    from pafree.audit.step import audit_training_step
    original = optim.PASchedule.__call__

    def schedule_after_warm_up(self, t):
        lr = original(self, t)
        return lr if t < self.warmup else lr * 1.0           # MUTATION

    monkeypatch.setattr(optim.PASchedule, "__call__", schedule_after_warm_up)
    report = audit_training_step("digits", "pa", at=[1], evaluate=False, **TINY)
    assert report.ok, report.findings             # the last warm-up step never multiplies
    report = audit_training_step("digits", "pa", at=[1, 2], evaluate=False, **TINY)
    assert {f.where for f in report.findings} == {
        f"{mutation_line(schedule_after_warm_up)} in schedule_after_warm_up"}


def test_value_error_inside_the_step_exits_3_not_2(capsys, monkeypatch):
    import pafree.run as runs
    from pafree.cli import main

    def step_raising(self, batch):
        raise ValueError("raised by the step")

    monkeypatch.setattr(runs.Run, "train_step", step_raising)
    status = main(["audit", "--task", "digits", "--at", "0", "--json", "--set", "steps=20"])
    out = capsys.readouterr()
    assert status == 3
    assert "ValueError: raised by the step" in json.loads(out.out)["error"]
    assert "raised by the step" in out.err
