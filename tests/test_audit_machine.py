"""The machine-level audit (pafree.audit.machine): Valgrind counts every float
multiply-like instruction the CPU executes inside the audited region.

The runs under Valgrind need valgrind (with its tool headers and static
libraries) and gcc; without them these tests are skipped, and the error
messages are tested instead. Each run takes about a minute, so each report is
computed once per module.
"""
import textwrap

import pytest

from pafree import cli as pafree_cli
from pafree.audit import cli, machine

TOOLCHAIN = machine.toolchain_problem()
needs_valgrind = pytest.mark.skipif(TOOLCHAIN is not None, reason=str(TOOLCHAIN))

MUTATIONS = textwrap.dedent('''
    # Run by the audited child before the run is built: every optimizer step first
    # multiplies where only the machine layer can see it.
    import ctypes, ctypes.util, math
    import numba
    import numpy as np
    import pafree.optim

    @numba.njit(cache=True)
    def scaled_by_a_float(x):                      # a Numba kernel that multiplies
        return x * np.float32(1.5)

    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.cbrt.restype = ctypes.c_double
    libm.cbrt.argtypes = [ctypes.c_double]
    step = pafree.optim.AdamW.step

    def mutated(self, *args, **kwargs):
        libm.cbrt(27.5)                                    # a C library call
        np.random.default_rng(0).random(4, dtype=np.float32)   # numpy's float sampler
        math.prod([3, 5])                                  # math.prod on ints
        scaled_by_a_float(np.ones(64, np.float32))         # JIT code
        return step(self, *args, **kwargs)

    pafree.optim.AdamW.step = mutated
''')


TOOL_CHECK = textwrap.dedent('''
    import ctypes, sys, threading
    region = ctypes.CDLL(sys.argv[1])
    x, y, i, j = 1.5, 3.25, 7, 9
    for _ in range(500):
        x * y                                    # outside the region: not counted
    region.pafree_region_begin()
    for _ in range(1000):
        x * y                                    # 1000 float multiplies
        i * j                                    # integer: not counted
    worker = threading.Thread(target=lambda: [x / y for _ in range(300)])
    worker.start(); worker.join()                # 300 divides in another thread
    region.pafree_region_end()
    region.pafree_dump()
    print(region.pafree_running())
''')


@needs_valgrind
def test_the_tool_counts_exactly_inside_the_region_in_every_thread(tmp_path):
    import subprocess, sys
    lib = machine.build_tool()
    script = tmp_path / "check.py"
    script.write_text(TOOL_CHECK)
    out = tmp_path / "sites"
    done = subprocess.run(["valgrind", "-q", "--tool=pafree", f"--pafree-out={out}",
                           sys.executable, str(script), str(lib / "libpafree_region.so")],
                          env=dict(machine.os.environ, VALGRIND_LIB=str(lib)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    sites = machine._parse_sites(f"{out}.0", "check")
    by_class = {}
    for s in sites:
        by_class[s.cls] = by_class.get(s.cls, 0) + s.count
    assert by_class == {"mul": 1000, "div": 300}, sites     # x * y runs inline in the eval loop
    assert all(s.frames[0].object and s.frames[0].function for s in sites), sites


def site_functions(report, phase=None):
    return {s.frames[0].function for s in report.sites if phase in (None, s.phase)}


@pytest.fixture(scope="module")
def pa_digits():
    return machine.audit_machine("digits", "pa")


@needs_valgrind
def test_pa_digits_step_and_evaluation_execute_no_float_multiply(pa_digits):
    assert pa_digits.ok and not pa_digits.sites, pa_digits.to_text()
    assert pa_digits.total == 0
    assert not any(n.startswith("kernels compiled under Valgrind") for n in pa_digits.notes)


@needs_valgrind
def test_standard_step_multiplies_in_blas_and_numpy():
    report = machine.audit_machine("digits", "standard", batch_size=8, eval_examples=1)
    assert not report.ok
    train = report.counts["train step"]
    assert train["fma"] > 10_000 and train["mul"] > 1_000, report.counts   # GEMM and elementwise
    objects = {s.frames[0].object for s in report.sites}
    assert any("openblas" in o.lower() for o in objects), objects
    assert any("_multiarray_umath" in o for o in objects), objects
    text = report.to_text()
    assert "train step" in text and "openblas" in text.lower()


@needs_valgrind
def test_mutations_only_this_layer_sees_are_found(tmp_path):
    setup = tmp_path / "mutations.py"
    setup.write_text(MUTATIONS)
    report = machine.audit_machine("digits", "pa", batch_size=8, eval_examples=1, setup=setup)
    found = site_functions(report, "train step")
    assert not report.ok
    assert {"math_prod", "random_standard_uniform_fill_f"} <= found, report.to_text()
    assert any(s.frames[0].object.split("/")[-1].startswith("libm")
               and "cbrt" in s.frames[0].function for s in report.sites), report.to_text()
    assert any("scaled_by_a_float" in s.kernel for s in report.sites), report.to_text()


@needs_valgrind
def test_json_report_round_trips(pa_digits):
    import json
    data = json.loads(pa_digits.to_json())
    assert data["layer"] == "machine" and data["task"] == "digits" and data["mode"] == "pa"
    assert data["ok"] == pa_digits.ok
    assert sum(sum(c.values()) for c in data["counts"].values()) == pa_digits.total
    assert len(data["sites"]) == len(pa_digits.sites)


def test_missing_valgrind_is_a_clear_error(monkeypatch, capsys):
    real_which = machine.shutil.which
    monkeypatch.setattr(machine.shutil, "which",
                        lambda name: None if name == "valgrind" else real_which(name))
    problem = machine.toolchain_problem()
    assert "valgrind is not installed" in problem and "apt-get install valgrind" in problem
    args = pafree_cli.build_parser().parse_args(["audit", "--machine", "--task", "digits"])
    assert cli.run(args) == 2
    err = capsys.readouterr().err
    assert "apt-get install valgrind" in err and "Traceback" not in err


def test_missing_headers_or_gcc_are_clear_errors(monkeypatch, tmp_path):
    if machine.shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    monkeypatch.setattr(machine, "VALGRIND_INCLUDE", tmp_path / "include")
    problem = machine.toolchain_problem()
    assert "headers or static libraries are missing" in problem and "valgrind" in problem
    monkeypatch.undo()
    real_which = machine.shutil.which
    monkeypatch.setattr(machine.shutil, "which",
                        lambda name: None if name == "gcc" else real_which(name))
    assert "gcc is not installed" in machine.toolchain_problem()
    with pytest.raises(machine.MachineAuditError, match="gcc"):
        machine.build_tool()
