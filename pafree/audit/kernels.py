"""Static kernel audit: the float multiply-like instructions a Numba CPU kernel compiled to.

``scan_dispatcher(kernel)`` reads the LLVM IR and the native (x86-64) assembly
of every compiled signature of a Numba dispatcher and returns the forbidden
instructions, as text lines, with instruction counts. Forbidden: float
multiply, divide, remainder, fused multiply-add, square root, reciprocal and
transcendental (exp, log, pow, trigonometric ...), whether an LLVM
instruction, an LLVM intrinsic, a call to a libm-like function or a machine
instruction. Integer multiplies and divisions (index arithmetic: ``mul``,
``imul``, ``vpmulld``) are allowed and counted apart; so are integer and
float adds.

What is scanned is the whole compiled module of each signature: the kernel,
its Python wrapper and, for ``parallel=True`` kernels, the gufunc that holds
the body of the ``prange`` loop (Numba links it into the same module).
Numba will not show the IR of a kernel loaded from the on-disk cache, so such
signatures are compiled again, uncached, with the kernel's own options: the
same source under the same options gives the same code.
"""
import re
from collections import Counter

import numba
import numpy as np

# libm-like names: an LLVM intrinsic (@llvm.sqrt.f32) or a C call (@sqrtf, @pow)
_MATH = (r"sqrt|rsqrt|cbrt|exp|exp2|exp10|expm1|log|log2|log10|log1p|pow|powi|ldexp|"
         r"fma|fmuladd|fmod|remainder|hypot|sin|cos|tan|asin|acos|atan|atan2|sinh|cosh|"
         r"tanh|asinh|acosh|atanh|erf|erfc|lgamma|tgamma|gamma")
IR_FORBIDDEN = re.compile(
    rf"=\s*(?:fmul|fdiv|frem)\b|\bcall\b[^@]*@(?:llvm\.)?(?:{_MATH})(?:f|l)?(?:\.|\()")
IR_OPCODE = re.compile(r"^\s*%\S+\s*=\s*(\w+)\s+(?:(?:nuw|nsw|exact|disjoint|nneg|samesign)\s+)*(\S+)")
IR_INT_ADD = {"add", "sub"}
IR_FLOAT_ADD = {"fadd", "fsub"}
IR_INT_MUL = {"mul", "sdiv", "udiv", "srem", "urem"}

_FP = r"(?:ss|sd|ps|pd|sh|ph)"
ASM_FORBIDDEN = re.compile(
    rf"^(?:v?(?:mul|div|sqrt|rsqrt|rcp|dp){_FP}"            # SSE/AVX multiply, divide, root, dot
    rf"|vf(?:n?m(?:add|sub)|maddsub|msubadd)(?:132|213|231)?{_FP}"   # fused multiply-add
    rf"|v(?:rcp|rsqrt)(?:14|28){_FP}|vexp2(?:ps|pd)|vscalef{_FP}|vgetexp{_FP}"
    r"|vdpbf16ps|vdpphps|tdp\w+"                           # bf16/fp16 dot products, AMX
    r"|fi?(?:mul|div|divr)[psl]*|fsqrt|fyl2x|fyl2xp1|f2xm1|fscale|fsin|fcos|fsincos"
    r"|fptan|fpatan|fprem1?)$")                            # x87
ASM_INT_MUL = re.compile(r"^(?:i?mul[bwlq]?|mulx[lq]?|v?pmul\w+|v?pmadd\w+|vpdp\w+|i?div[bwlq]?)$")
ASM_FLOAT_ADD = re.compile(rf"^v?(?:add|sub){_FP}$")
ASM_INT_ADD = re.compile(r"^(?:add[bwlq]?|sub[bwlq]?|inc[bwlq]?|dec[bwlq]?|adc[bwlq]?|v?padd\w+|v?psub\w+)$")
ASM_INSTRUCTION = re.compile(r"^\s+([a-z][a-z0-9]*)\b", re.M)


def scan_ir(ir):
    """(forbidden lines, counts) of one LLVM IR module text (declarations skipped)."""
    forbidden, counts = [], Counter()
    for line in ir.splitlines():
        if line.startswith("declare"):
            continue
        if IR_FORBIDDEN.search(line):
            forbidden.append(line.strip())
        match = IR_OPCODE.match(line)
        if match:
            op, first_type = match.groups()
            if op in IR_FLOAT_ADD:
                counts["ir float add"] += 1
            elif op in IR_INT_ADD and "i" in first_type:
                counts["ir int add"] += 1
            elif op in IR_INT_MUL:
                counts["ir int mul/div"] += 1
    return forbidden, counts


def scan_asm(asm):
    """(forbidden lines, counts) of one x86-64 assembly text (AT&T syntax, as Numba prints it)."""
    forbidden, counts = [], Counter()
    for line in asm.splitlines():
        match = ASM_INSTRUCTION.match(line)
        if not match:
            continue
        op = match.group(1)
        if ASM_FORBIDDEN.match(op):
            forbidden.append(line.strip())
        elif ASM_INT_MUL.match(op):
            counts["asm int mul/div"] += 1
        elif ASM_FLOAT_ADD.match(op):
            counts["asm float add"] += 1
        elif ASM_INT_ADD.match(op):
            counts["asm int add"] += 1
    return forbidden, counts


def _inspectable(dispatcher):
    """The dispatcher itself, or an uncached twin when some signature came from the disk cache."""
    if not dispatcher.stats.cache_hits:
        return dispatcher
    twin = numba.jit(**dispatcher.targetoptions)(dispatcher.py_func)
    for signature in dispatcher.signatures:
        twin.compile(signature)
    return twin


def scan_dispatcher(dispatcher):
    """Scan every compiled signature of a Numba CPU dispatcher.

    Returns ``(counts, forbidden)``: ``counts`` maps an instruction class to
    its number over all signatures ("ir int add", "ir float add",
    "ir int mul/div", "asm int add", "asm float add", "asm int mul/div",
    "forbidden"); ``forbidden`` lists each offending IR or assembly line,
    prefixed with the signature and "IR:" or "asm:". Empty when clean.
    """
    kernel = _inspectable(dispatcher)
    counts, forbidden = Counter(), []
    for signature in kernel.signatures:
        for label, text, scan in (("IR", kernel.inspect_llvm(signature), scan_ir),
                                  ("asm", kernel.inspect_asm(signature), scan_asm)):
            found, found_counts = scan(text)
            counts.update(found_counts)
            forbidden += [f"{signature} {label}: {line}" for line in found]
    counts["forbidden"] = len(forbidden)
    return dict(counts), forbidden


def compile_ops_kernels():
    """Run every public op of pafree.ops once on small float32 inputs, compiling its kernels."""
    from .. import ops
    from ..ops import cpu, gemm
    x = np.linspace(-3.0, 3.0, 12, dtype=np.float32).reshape(3, 4)
    x_bits, out = x.reshape(-1).view(np.int32), np.empty(12, np.int32)
    for kernel in (k for pair in cpu.UNARY.values() for k in pair):
        kernel(x_bits, out)
    for kernel in (k for pair in cpu.BINARY.values() for k in pair):
        kernel(x_bits, x_bits[::-1].copy(), out)
    for transpose_a in (False, True):
        for transpose_b in (False, True):
            ops.pam_matmul(x.T if transpose_a else x, x if transpose_b else x.T,
                           transpose_a=transpose_a, transpose_b=transpose_b)
    batch = np.stack([x] * (4 * numba.get_num_threads()))      # many small GEMMs: batched kernel
    ops.pam_matmul(batch, batch.transpose(0, 2, 1))
    gemm.pam_matmul_exact_grads(x, x.T, np.ones((3, 3), np.float32))


def scan_all(prefix="pafree.ops"):
    """Scan every registered kernel (``pafree.ops.jit.KERNELS``) defined under ``prefix``.

    Compiles the ops kernels first (``compile_ops_kernels``). Returns
    ``{name: (counts, forbidden)}``; a kernel with no compiled signature
    cannot be scanned and is reported as one forbidden line saying so.
    """
    from ..ops.jit import KERNELS
    compile_ops_kernels()
    results = {}
    for name, kernel in KERNELS.items():
        if not kernel.py_func.__module__.startswith(prefix):
            continue
        if not kernel.signatures:
            results[name] = ({"forbidden": 1}, ["not compiled: no signature to scan"])
        else:
            results[name] = scan_dispatcher(kernel)
    return results
