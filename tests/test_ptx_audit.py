"""Every CUDA kernel compiles to PTX (sm_90, no GPU needed) free of float multiply/divide/transcendentals,
and the scan really catches those instructions when they are there."""
import math
import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA simulator compiles no PTX", allow_module_level=True)
pytest.importorskip("numba_cuda", reason="the PTX audit needs the `cuda` extra (numba-cuda + NVVM)")

from numba import cuda  # noqa: E402

from pafree.audit import ptx  # noqa: E402
from pafree.ops import cuda as cuda_ops  # noqa: E402


def compiled(fn, signature="void(float32[::1], float32[::1], float32[::1])"):
    try:
        return ptx.compile_ptx(fn, signature)
    except Exception as exc:     # no NVVM: the toolchain, not the code, is missing
        if "NVVM" in type(exc).__name__ or "libNVVM" in str(exc):
            pytest.skip(f"NVVM not found: {exc}")
        raise


@pytest.fixture(scope="module")
def audit():
    compiled(*cuda_ops.KERNELS["float_neg"])             # skips the module early without NVVM
    return {name: (findings, integer_ops) for name, findings, integer_ops in ptx.audit_kernels()}


def test_every_kernel_is_audited(audit):
    expected = set(cuda_ops.UNARY) | set(cuda_ops.BINARY) | {
        "float_add", "float_sub", "float_neg", "float_relu", "where_kernel", "gather",
        "sum_axis", "max_axis", "pam_gemm_tiled", "pam_gemm_small", "exact_grad_a", "exact_grad_b",
        "take_kernel", "scatter_add_kernel", "floor_kernel", "isfinite_kernel",
        "put_kernel", "nonnegative_kernel", "first_max_axis", "adamw_pa_kernel",
        "unfold_kernel", "fold_kernel"}
    assert set(audit) == expected


def test_no_kernel_has_float_multiply_divide_or_transcendental(audit):
    bad = {name: dict(findings) for name, (findings, _) in audit.items() if findings}
    assert bad == {}
    lines, total = ptx.report(list((n, *r) for n, r in audit.items()))
    assert total == 0 and lines[-1].endswith("0 findings")


def test_gemm_ptx_holds_the_float_adds_and_integer_indexing(audit):
    """The scan reads real instructions: the GEMM's float32 accumulation shows up as add.f32."""
    kernel, signature = cuda_ops.KERNELS["pam_gemm_tiled"]
    ops = ptx.opcodes(compiled(kernel, signature))
    assert "add.f32" in ops
    assert not audit["pam_gemm_tiled"][0]
    assert any(op.startswith(("mul.lo", "mul.wide", "mad.lo")) for op in audit["pam_gemm_tiled"][1])


def float_multiply(a, b, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a[i] * b[i]


def float_divide(a, b, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a[i] / b[i]


def float_fused(a, b, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a[i] * b[i] + out[i]


def float_sqrt_exp(a, b, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = math.sqrt(a[i]) + math.exp2(b[i])


@pytest.mark.parametrize("fn, caught", [
    (float_multiply, ("mul.rn.f32", "mul.f32")),
    (float_divide, ("div.rn.f32", "div.full.f32", "div.approx.f32", "rcp.rn.f32")),
    (float_fused, ("fma.rn.f32", "mad.rn.f32", "mul.rn.f32")),
    (float_sqrt_exp, ("sqrt.rn.f32", "ex2.approx.f32", "ex2.approx.ftz.f32")),
])
def test_scan_catches_float_arithmetic(fn, caught):
    findings, _ = ptx.scan(compiled(fn))
    assert any(op in findings for op in caught), dict(findings)


def test_integer_multiply_is_reported_not_flagged():
    def scale_index(a, b, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = a[i] * b[i] + 3 * i
    findings, integer_ops = ptx.scan(compiled(scale_index, "void(int32[::1], int32[::1], int32[::1])"))
    assert not findings
    assert any(op.startswith(("mul.lo", "mad.lo")) for op in integer_ops)


def test_scan_reads_predicated_and_vector_float_forms():
    text = "\n".join([
        ".visible .entry k()", "{", "\t@%p1 fma.rn.f32 \t%f3, %f1, %f2, %f0;",
        "\t@!%p2 mul.rn.f16x2 %r1, %r2, %r3;", "\tadd.f64 %fd1, %fd2, %fd3;",
        "\tmul.wide.s32 %rd1, %r1, 4;", "\tadd.f32 %f1, %f2, %f3;", "$L__BB0_1:", "\tret;", "}"])
    findings, integer_ops = ptx.scan(text)
    assert findings == {"fma.rn.f32": 1, "mul.rn.f16x2": 1, "add.f64": 1}
    assert integer_ops == {"mul.wide.s32": 1}


def test_report_counts_findings():
    from collections import Counter
    results = [("clean", Counter(), Counter({"mul.wide.s32": 2})),
               ("dirty", Counter({"mul.rn.f32": 1}), Counter())]
    lines, total = ptx.report(results)
    assert total == 1
    assert lines[1].split()[:2] == ["ok", "clean"] and lines[2].split()[:2] == ["FAIL", "dirty"]
