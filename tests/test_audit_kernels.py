"""The static kernel audit: zero findings across pafree.ops, and it does catch multiplies."""
import numba
import numpy as np
import pytest
from numba import prange

from pafree.audit.kernels import scan_all, scan_asm, scan_dispatcher, scan_ir


def test_no_float_multiply_like_instruction_in_any_ops_kernel():
    results = scan_all()
    assert {"pam", "pad", "paexp2", "palog2", "pasqrt"} <= set(results)
    for name, (counts, forbidden) in results.items():
        assert forbidden == [], name
        assert counts["asm int add"] > 0, name       # the scan did read real machine code


@numba.njit(parallel=True, fastmath=False)
def parallel_float_multiply(x, out):
    for i in prange(x.size):
        out[i] = x[i] * np.float32(1.5)


@numba.njit(fastmath=False)
def float_divide(x, out):
    for i in range(x.size):
        out[i] = x[i] / np.float32(3.0)


@numba.njit(fastmath=False)
def integer_multiply(x, out):
    for i in range(x.size):
        out[i] = x[i] * x[i]


def compiled(kernel, dtype):
    kernel(np.ones(8, dtype), np.empty(8, dtype))
    return kernel


def test_catches_float_multiply_inside_a_prange_body():
    counts, forbidden = scan_dispatcher(compiled(parallel_float_multiply, np.float32))
    assert any("IR:" in line and "fmul" in line for line in forbidden)
    assert any("asm:" in line and "mul" in line for line in forbidden)
    assert counts["forbidden"] == len(forbidden)


def test_catches_float_divide():
    _, forbidden = scan_dispatcher(compiled(float_divide, np.float32))
    assert any("IR:" in line and "fdiv" in line for line in forbidden)
    assert any("asm:" in line and "div" in line for line in forbidden)


def test_integer_multiply_is_counted_not_forbidden():
    counts, forbidden = scan_dispatcher(compiled(integer_multiply, np.int32))
    assert forbidden == []
    assert counts["ir int mul/div"] > 0 and counts["asm int mul/div"] > 0


@pytest.mark.parametrize("line", [
    "  %5 = fmul float %3, %4", "  %v = fdiv <16 x float> %a, %b", "  %r = frem double %a, %b",
    "  %7 = tail call <8 x float> @llvm.fma.v8f32(<8 x float> %a, <8 x float> %b, <8 x float> %c)",
    "  %8 = call float @llvm.fmuladd.f32(float %a, float %b, float %c)",
    "  %9 = call float @llvm.sqrt.f32(float %x)", "  %1 = call double @llvm.exp.f64(double %x)",
    "  %2 = call float @llvm.log2.f32(float %x)", "  %3 = call float @powf(float %x, float %y)",
    "  %4 = tail call double @tanh(double %x)"])
def test_ir_patterns_forbidden(line):
    assert scan_ir(line)[0] == [line.strip()]


@pytest.mark.parametrize("line", [
    "  %5 = mul nsw i64 %3, %4", "  %6 = fadd float %a, %b", "  %7 = add <16 x i32> %a, %b",
    "  %8 = call i32 @llvm.smin.i32(i32 %a, i32 %b)", "declare float @llvm.sqrt.f32(float)",
    "  %9 = fcmp olt float %a, %b", "  %10 = sitofp i32 %a to float"])
def test_ir_patterns_allowed(line):
    assert scan_ir(line)[0] == []


@pytest.mark.parametrize("mnemonic", [
    "mulss", "vmulps", "vmulpd", "divsd", "vdivps", "vsqrtps", "sqrtss", "vfmadd231ps",
    "vfnmsub213ss", "vfmaddsub132pd", "vrcp14ps", "vrsqrtps", "vscalefps", "vdpps", "fmul",
    "fdivrp", "fsqrt", "fyl2x"])
def test_asm_forbidden(mnemonic):
    assert scan_asm(f"\t{mnemonic}\t%zmm1, %zmm2, %zmm3")[0] != []


@pytest.mark.parametrize("mnemonic, kind", [
    ("imulq", "asm int mul/div"), ("vpmulld", "asm int mul/div"), ("mulxq", "asm int mul/div"),
    ("vpmuludq", "asm int mul/div"), ("vaddps", "asm float add"), ("addss", "asm float add"),
    ("vpaddd", "asm int add"), ("addq", "asm int add")])
def test_asm_allowed_and_counted(mnemonic, kind):
    forbidden, counts = scan_asm(f"\t{mnemonic}\t%zmm1, %zmm2, %zmm3")
    assert forbidden == [] and counts[kind] == 1
