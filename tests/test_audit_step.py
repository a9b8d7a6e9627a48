"""The whole-step audit: clean in mode pa on every task (evaluation and decoding included),
failing with the places of the multiplies in the modes that keep float arithmetic."""
import json

import numpy as np
import pytest

from pafree.audit.step import audit_training_step
from pafree.cli import main
from pafree.models import EncoderDecoder

SMALL = {"batch_size": 4}


@pytest.fixture(scope="module")
def digits_report():
    return audit_training_step(task="digits", mode="pa", steps=2, **SMALL)


def assert_clean(report):
    assert report.ok and report.findings == []
    assert report.primitives["pam_matmul"][1] > 0 and report.primitives["pam"][1] > 0
    assert report.float_adds >= report.primitives["pam_matmul"][1]    # one add per PAM in a GEMM
    assert report.kernels and all(k.forbidden == [] for k in report.kernels)
    assert report.instrumented_functions > 100 and report.guarded_arrays > 10


def test_pa_step_is_clean_on_digits(digits_report):
    assert_clean(digits_report)


@pytest.mark.parametrize("task", ["numbers", "addition"])
def test_pa_step_is_clean_on_sequence_tasks(task):
    assert_clean(audit_training_step(task=task, mode="pa", **SMALL))


# the float baseline code: the only places allowed to multiply in these modes
BASELINE_FILES = {"pafree/ops/standard.py", "pafree/optim.py"}


@pytest.mark.parametrize("mode", ["standard", "pa-matmul"])
def test_modes_with_float_arithmetic_fail_and_name_the_baseline(mode):
    report = audit_training_step(task="digits", mode=mode, evaluate=False, **SMALL)
    assert not report.ok
    files = {f.where.split(":")[0] for f in report.findings}
    assert files <= BASELINE_FILES and "pafree/ops/standard.py" in files
    if mode == "pa-matmul":      # PA matmuls: the float baseline's matmul never ran
        assert "pam_matmul" in report.primitives and "fmatmul" not in report.primitives


ORIGINAL_BEAM_SEARCH = EncoderDecoder.beam_search


def beam_search_with_multiply(self, src, beam=5, max_len=None):
    out = ORIGINAL_BEAM_SEARCH(self, src, beam, max_len)
    np.float32(len(out)) * np.float32(1)           # a float multiply during decoding
    return out


def test_beam_search_is_inside_the_audit(monkeypatch):
    monkeypatch.setattr(EncoderDecoder, "beam_search", beam_search_with_multiply)
    report = audit_training_step(task="numbers", mode="pa", **SMALL)
    line = beam_search_with_multiply.__code__.co_firstlineno + 2
    assert [f.where for f in report.findings] == [
        f"tests/test_audit_step.py:{line} in beam_search_with_multiply"]


def test_text_and_json_reports(digits_report):
    text = digits_report.to_text()
    assert "VERDICT: CLEAN" in text and "pam_matmul" in text and "float add" in text
    data = json.loads(digits_report.to_json())
    assert data["ok"] is True and data["steps"] == 2 and data["findings"] == []
    assert {k["name"] for k in data["kernels"]} == {k.name for k in digits_report.kernels}


def test_cli_usage_error_exits_2(capsys):
    assert main(["audit", "--task", "nonsense"]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_ptx_findings_fail_the_verdict(monkeypatch):
    from collections import Counter

    from pafree.audit import ptx
    from pafree.audit.step import Audit
    monkeypatch.setattr(ptx, "audit_kernels", lambda: [
        ("pam", Counter({"mul.rn.f32": 2}), Counter({"mul.lo.s32": 1})),
        ("pad", Counter(), Counter())])
    with Audit() as audit:
        pass
    report = audit.report(ptx=True)
    assert not report.ok
    assert [(f.op, f.where, f.count) for f in report.findings] == [
        ("PTX mul.rn.f32", "CUDA kernel pam", 2)]
    assert [k.name for k in report.kernels] == ["cuda:pam", "cuda:pad"]
