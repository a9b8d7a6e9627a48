"""PTX audit: compile every CUDA kernel to PTX and scan it for float arithmetic beyond add/sub/compare.

Works without a GPU: ``numba.cuda.compile_ptx`` needs only NVVM (the CUDA
toolkit's libnvvm, or the PyPI packages of the ``cuda`` extra), not a driver.
A finding is any instruction that multiplies, divides, takes a reciprocal,
square root, exponential, logarithm or trigonometric function of a float, or
any float64 arithmetic at all (the kernels are float32 end to end). Integer
multiplies and divisions (``mul.lo``, ``mul.wide``, ``mad.lo``, ``div.s64``,
``rem``: array indexing) are allowed and counted separately.
"""
import re
import types
from collections import Counter
from contextlib import contextmanager

TARGET_CC = (9, 0)                       # sm_90 (H100)

FLOAT_TYPE = r"(?:f16|f16x2|bf16|bf16x2|f32|f64)"
# an opcode is its dotted name: mul.rn.f32, fma.rn.ftz.f32, setp.lt.s64, ...
FORBIDDEN = re.compile(
    rf"^(?:(?:mul|mad|fma|div|rcp|sqrt|rsqrt|ex2|lg2|sin|cos|tanh)\..*\b{FLOAT_TYPE}\b"
    r"|(?:rcp|sqrt|rsqrt|ex2|lg2|sin|cos|tanh)\b"
    r"|(?:add|sub|neg|abs|min|max|cvt|setp|selp|mov|ld|st|testp)\..*\bf64\b)")
INTEGER_ARITH = re.compile(r"^(?:mul|mad|div|rem)\.(?:lo\.|hi\.|wide\.)?[su](?:16|32|64)$")
INSTRUCTION = re.compile(r"^\s*(?:@!?%\w+\s+)?([a-z][\w.]*)", re.M)


def opcodes(ptx):
    """Every instruction's opcode in a PTX text (directives, labels and comments skipped)."""
    return [m.group(1) for m in INSTRUCTION.finditer(ptx)]


def scan(ptx):
    """(findings, integer_ops): forbidden opcodes and allowed integer mul/div opcodes, counted."""
    ops = opcodes(ptx)
    findings = Counter(op for op in ops if FORBIDDEN.match(op))
    integer_ops = Counter(op for op in ops if INTEGER_ARITH.match(op))
    return findings, integer_ops


@contextmanager
def compile_without_gpu(cc):
    """Let numba compile device functions when no GPU is present.

    ``compile_ptx`` itself needs no driver, but numba compiles each called
    device function (every bits.py function) for the *current* device's
    compute capability, which asks the driver. Without one, answer with the
    target capability; with a GPU, change nothing.
    """
    from numba import cuda
    import numba.cuda.dispatcher as dispatcher
    if cuda.is_available():
        yield
        return
    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def compile_ptx(kernel, signature, cc=TARGET_CC):
    """The PTX text of one ``cuda.jit`` kernel (or plain function) for ``signature``."""
    from numba import cuda
    with compile_without_gpu(cc):
        ptx, _ = cuda.compile_ptx(getattr(kernel, "py_func", kernel), signature, cc=cc)
    return ptx


def audit_kernels(cc=TARGET_CC):
    """Scan every kernel of pafree.ops.cuda: a list of (name, findings, integer_ops)."""
    from ..ops import cuda as cuda_ops
    return [(name, *scan(compile_ptx(kernel, signature, cc)))
            for name, (kernel, signature) in cuda_ops.KERNELS.items()]


def report(results, cc=TARGET_CC):
    """Printable lines, one per kernel, and the total number of findings."""
    lines = [f"PTX audit, sm_{cc[0]}{cc[1]}: forbidden float ops | integer mul/div (indexing, allowed)"]
    total = 0
    for name, findings, integer_ops in results:
        total += sum(findings.values())
        bad = ", ".join(f"{op} x{n}" for op, n in sorted(findings.items())) or "none"
        ints = ", ".join(f"{op} x{n}" for op, n in sorted(integer_ops.items())) or "none"
        lines.append(f"  {'FAIL' if findings else 'ok  '} {name:<16} {bad} | {ints}")
    lines.append(f"{len(results)} kernels, {total} findings")
    return lines, total
