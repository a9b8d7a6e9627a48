"""Mutation tests: a float multiply injected anywhere in a training step makes `pafree audit` fail
and name the place. Each mutation is injected by monkeypatching, never by editing a source file."""
import inspect
import json

import numpy as np
import pytest

from pafree import Tensor, optim
from pafree.autograd import registry
from pafree.cli import main
from pafree.models import layers
from pafree.ops import cpu, jit

HERE = "tests/test_audit_mutations.py"
AUDIT = ["audit", "--task", "digits", "--mode", "pa", "--batch-size", "8", "--at", "0", "--json"]


def audit_findings(capsys):
    """Run `pafree audit` on a small digits step; its exit status and findings."""
    status = main(AUDIT)
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] == (status == 0)
    return status, report["findings"]


def mutation_place(fn):
    """'tests/test_audit_mutations.py:LINE' of the line marked MUTATION in ``fn``."""
    lines, start = inspect.getsourcelines(fn)
    (offset,) = [i for i, line in enumerate(lines) if "# MUTATION" in line]
    return f"{HERE}:{start + offset}"


def test_unmutated_step_is_clean(capsys):
    status, findings = audit_findings(capsys)
    assert (status, findings) == (0, [])


# (a) a Numba kernel that really multiplies floats

@pytest.fixture
def private_kernel_registry(monkeypatch):
    """Kernels compiled by a test register in a copy of KERNELS, dropped afterwards."""
    monkeypatch.setattr(jit, "KERNELS", dict(jit.KERNELS))


def multiplying_pam_kernels():
    """A (serial, parallel) kernel pair, as pafree.ops.cpu.BINARY holds, that multiplies."""
    @jit.cpu_kernel(name="mutant_pam")
    def mutant_pam(a, b, out):
        x, y, z = a.view(np.float32), b.view(np.float32), out.view(np.float32)
        for i in range(x.size):
            z[i] = x[i] * y[i]          # MUTATION: a real float multiply inside a kernel
    return mutant_pam, mutant_pam


def test_kernel_multiply_fails_the_audit(capsys, monkeypatch, private_kernel_registry):
    monkeypatch.setitem(cpu.BINARY, "pam", multiplying_pam_kernels())
    status, findings = audit_findings(capsys)
    assert status == 1
    static = [f for f in findings if f["layer"] == "static"]
    assert static and all(f["where"] == "kernel mutant_pam" for f in static)
    assert any("fmul" in f["detail"] for f in static)


# (b) a numpy expression in a layer's forward

ORIGINAL_LINEAR_FORWARD = layers.Linear.forward


def linear_forward_with_multiply(self, x):
    y = ORIGINAL_LINEAR_FORWARD(self, x)
    return y + Tensor(y.data * np.float32(0))      # MUTATION: adds zero, computed by multiplying


def test_layer_forward_multiply_fails_the_audit(capsys, monkeypatch):
    monkeypatch.setattr(layers.Linear, "forward", linear_forward_with_multiply)
    status, findings = audit_findings(capsys)
    assert status == 1
    place = mutation_place(linear_forward_with_multiply)
    assert {f["where"] for f in findings} == {f"{place} in linear_forward_with_multiply"}


# (c) a backward rule

def add_vjp_with_multiply(g, ans, a, b):
    return g * np.float32(1)                       # MUTATION: the identity, by multiplying


def test_backward_rule_multiply_fails_the_audit(capsys, monkeypatch):
    add = registry.PRIMITIVES["add"]
    monkeypatch.setattr(add, "vjp", dict(add.vjp))      # the original rules come back after
    add.rule(add_vjp_with_multiply, add_vjp_with_multiply)
    status, findings = audit_findings(capsys)
    assert status == 1
    place = mutation_place(add_vjp_with_multiply)
    assert {f["where"] for f in findings} == {f"{place} in add_vjp_with_multiply"}


# (d) the optimizer's scalar bookkeeping (bias correction)

def bias_correction_by_power(beta, t, previous):
    return np.float32(1.0 - beta ** t)             # MUTATION: a float power


def test_optimizer_bookkeeping_multiply_fails_the_audit(capsys, monkeypatch):
    monkeypatch.setitem(optim.ARITHMETIC, "pa", optim.ARITHMETIC["pa"]._replace(one_minus_power=bias_correction_by_power))
    status, findings = audit_findings(capsys)
    assert status == 1
    place = mutation_place(bias_correction_by_power)
    assert {f["where"] for f in findings} == {f"{place} in bias_correction_by_power"}


# (e) the learning-rate schedule

ORIGINAL_SCHEDULE = optim.PASchedule.__call__


def schedule_halved(self, t):
    return ORIGINAL_SCHEDULE(self, t) * 0.5        # MUTATION: a float multiply of the lr


def test_schedule_multiply_fails_the_audit(capsys, monkeypatch):
    monkeypatch.setattr(optim.PASchedule, "__call__", schedule_halved)
    status, findings = audit_findings(capsys)
    assert status == 1
    place = mutation_place(schedule_halved)
    assert {f["where"] for f in findings} == {f"{place} in schedule_halved"}
