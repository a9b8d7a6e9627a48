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
The assembly scanned is the machine code that runs: the ELF object MCJIT
loaded, disassembled by ``objdump`` (Numba's own assembly listing is a second
code generation and differs from it in places). Where it comes from:

- compiled in this process: the object Numba kept from the compile, with the
  IR Numba reports;
- loaded from the on-disk cache: the object stored in the cache entry, with
  the optimised IR stored next to it. The entry is used only if that IR is
  the IR of the loaded library, so the object scanned is the object loaded;
- without objdump (or without the object): Numba's assembly listing; for a
  signature from the cache that means an uncached recompile with the kernel's
  own options (slow: tens of seconds for the parallel GEMM).
"""
import pickletools
import re
import shutil
import subprocess
import tempfile
from collections import Counter

import numba
import numpy as np
from llvmlite import binding as llvm

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
    r"|fptan|fpatan|fprem1?"                               # x87
    r"|\(bad\))$")                                          # bytes objdump cannot decode
ASM_INT_MUL = re.compile(r"^(?:i?mul[bwlq]?|mulx[lq]?|v?pmul\w+|v?pmadd\w+|vpdp\w+|i?div[bwlq]?)$")
ASM_FLOAT_ADD = re.compile(rf"^v?(?:add|sub){_FP}$")
ASM_INT_ADD = re.compile(r"^(?:add[bwlq]?|sub[bwlq]?|inc[bwlq]?|dec[bwlq]?|adc[bwlq]?|v?padd\w+|v?psub\w+)$")
_PREFIX = r"(?:lock|rep\w*|data16|addr32|[c-gs]s|notrack|bnd|xacquire|xrelease|rex\S*|\{\w+\})"
ASM_INSTRUCTION = re.compile(rf"^\s+(?:{_PREFIX}\s+)*([a-z][a-z0-9]*|\(bad\))", re.M)
# What a kernel's code may call: LLVM intrinsics that move data or do integer, compare or
# exact float work, and Numba's runtime and the CPython API its Python wrapper uses
# (argument unpacking, reference counts, errors, threads for parallel kernels). Any other
# callee (BLAS: numba_xxgemm, cblas_*; libm: sqrtf, expf; a ctypes or cfunc pointer) is a
# finding, and so is an indirect call, but for the one Numba's wrapper makes to rebuild a
# dynamic exception (a function pointer read from its exception-info struct).
ALLOWED_INTRINSIC = re.compile(
    r"llvm\.(?:memset|memcpy|memmove|lifetime\.(?:start|end)|assume|expect|"
    r"experimental\.noalias\.scope\.decl|[su](?:min|max)|abs|fabs|copysign|minnum|maxnum|"
    r"minimum|maximum|floor|ceil|trunc|rint|nearbyint|round|roundeven|ctpop|ctlz|cttz|bswap|"
    r"bitreverse|fsh[lr]|[su](?:add|sub|mul)\.with\.overflow|[su](?:add|sub)\.sat|"
    r"masked\.(?:gather|scatter|load|store)|x86\.atomic\.\w+|"
    r"vector\.reduce\.(?:add|and|or|xor|[su]max|[su]min|fmax|fmin)|stacksave|stackrestore|"
    r"prefetch|dbg\.\w+)(?:\.\w+)*")
ALLOWED_RUNTIME = re.compile(
    r"NRT_\w+|numba_(?:gil_ensure|gil_release|unpickle|do_raise|runtime_build_excinfo_struct|"
    r"attempt_nocopy_reshape|parallel_for|extract_record_data|get_np_random_state|fatal_error)|"
    r"get_num_threads|set_num_threads|get_parallel_chunksize|set_parallel_chunksize|"
    r"get_sched_size|allocate_sched|deallocate_sched|do_scheduling_(?:un)?signed|get_thread_id|"
    r"printf|puts|memset|memcpy|memmove|PyExc_\w+|_Py_(?:NoneStruct|TrueStruct|FalseStruct)|"
    r"Py_(?:IncRef|DecRef)|PyArg_UnpackTuple|PyEval_(?:SaveThread|RestoreThread)|"
    r"PyErr_(?:SetString|SetNone|Clear|Occurred|Format|WriteUnraisable|Fetch|Restore|"
    r"NoMemory)|PyUnicode_FromString|PyBytes_FromStringAndSize|PyNumber_(?:Long|Float|Index)|"
    r"PyLong_(?:AsLongLong|AsUnsignedLongLong|FromLongLong|FromUnsignedLongLong|FromSsize_t|"
    r"AsSsize_t)|PyFloat_(?:AsDouble|FromDouble)|PyBool_FromLong|PyTuple_(?:Size|GetItem|New|"
    r"Pack)|PyObject_(?:GetAttrString|IsTrue|Hash|Str)|PyList_\w+|PyGILState_\w+")
IR_CALL = re.compile(r"\b(?:call|invoke)\b[^@%(]*?(?:\([^)]*\)\*?\s*)?([@%][-\w.$\"]+)\(")
IR_DEFINED = re.compile(r'^define[^@]*@("[^"]+"|[-\w.$]+)', re.M)
EXCINFO_POINTER = re.compile(r"=\s*extractvalue\s*\{ ptr, i32, ptr, ptr, i32 \} %\S+, 3$")
OBJDUMP = shutil.which("objdump")
OBJDUMP_LINE = re.compile(r"^\s*[0-9a-f]+:\t(.+)$", re.M)    # "  1f:\tvaddps %ymm1,%ymm2,%ymm3"


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


def scan_calls(ir):
    """(offending lines, number of calls) of the call instructions of an LLVM IR module:
    each callee must be defined in the module, an allowed intrinsic or runtime function."""
    defined = {name.strip('"') for name in IR_DEFINED.findall(ir)}
    definitions, offending, calls = {}, [], 0
    for line in ir.splitlines():
        line = line.strip()
        if line.startswith("%") and "=" in line:
            definitions[line.split("=", 1)[0].strip()] = line
        match = None if line.startswith("declare") else IR_CALL.search(line)
        if match is None:
            continue
        calls += 1
        callee = match.group(1)
        name = callee[1:].strip('"')
        if callee.startswith("%"):
            if not EXCINFO_POINTER.search(definitions.get(callee, "")):
                offending.append(f"indirect call: {line}")
        elif not (name in defined or ALLOWED_INTRINSIC.fullmatch(name)
                  or ALLOWED_RUNTIME.fullmatch(name)):
            offending.append(f"call to {name}: {line}")
    return offending, calls


def undefined_symbols(elf):
    """The external symbols an ELF object refers to (what its machine code can reach)."""
    with tempfile.NamedTemporaryFile(suffix=".o") as file:
        file.write(elf)
        file.flush()
        table = subprocess.run([OBJDUMP, "-t", file.name], capture_output=True, text=True,
                               check=True).stdout
    return sorted({line.split()[-1] for line in table.splitlines() if "*UND*" in line})


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


def disassemble(elf):
    """Assembly text of the code sections of an ELF object (objdump, AT&T syntax), one
    tab-indented instruction a line as ``scan_asm`` reads it."""
    with tempfile.NamedTemporaryFile(suffix=".o") as file:
        file.write(elf)
        file.flush()
        listing = subprocess.run([OBJDUMP, "-d", "-w", "--no-show-raw-insn", file.name],
                                 capture_output=True, text=True, check=True).stdout
    return "\n".join("\t" + instruction for instruction in OBJDUMP_LINE.findall(listing))


def cached_object(dispatcher, signature):
    """The ELF object a cache-loaded signature runs, read from its cache entry; None when
    the entry is gone or is not the one loaded (its IR differs from the loaded library's)."""
    cache, library = dispatcher._cache, dispatcher.overloads[signature].library
    key = cache._index_key(signature, library.codegen)
    name = cache._cache_file._load_index().get(key)
    if name is None:
        return None
    with open(cache._cache_file._data_path(name), "rb") as file:
        entry = file.read()
    # the pickled entry holds the object and the IR it was built from as plain bytes:
    # read them without unpickling (which would rebuild Numba objects)
    blobs = [arg for _, arg, _ in pickletools.genops(entry) if isinstance(arg, bytes)]
    objects = [b for b in blobs if b.startswith(b"\x7fELF")]
    bitcodes = [b for b in blobs if b.startswith(b"BC\xc0\xde")]
    if len(objects) != 1 or len(bitcodes) != 1:
        return None
    if str(llvm.parse_bitcode(bitcodes[0])) != str(library._shared_module):
        return None
    return objects[0]


def _texts(dispatcher, signature):
    """(source, [(label, text)]): the IR and the assembly scanned for one compiled signature."""
    library = dispatcher.overloads[signature].library
    if signature in dispatcher.stats.cache_hits:
        source, ir = "from cache", str(library._shared_module)
        elf = cached_object(dispatcher, signature) if OBJDUMP else None
    else:               # the object MCJIT was handed when Numba compiled the signature
        source, ir = "compiled here", dispatcher.inspect_llvm(signature)
        elf = getattr(library, "_compiled_object", None)
    if elf is not None and OBJDUMP:
        external = "\n".join(undefined_symbols(elf))
        return f"{source} (IR+object code)", [("IR", ir), ("object asm", disassemble(elf)),
                                               ("object symbols", external)]
    if source == "compiled here":
        return "compiled here (IR+asm)", [("IR", ir), ("asm", dispatcher.inspect_asm(signature))]
    twin = numba.jit(**dispatcher.targetoptions)(dispatcher.py_func)
    twin.compile(signature)
    return "recompiled (IR+asm)", [("IR", twin.inspect_llvm(signature)),
                                   ("asm", twin.inspect_asm(signature))]


def scan_dispatcher(dispatcher):
    """Scan every compiled signature of a Numba CPU dispatcher.

    Returns ``(counts, forbidden)``: ``counts`` maps an instruction class to
    its number over all signatures ("ir int add", "ir float add",
    "ir int mul/div", "asm int add", "asm float add", "asm int mul/div",
    "forbidden") and says where the text came from, as a number of signatures
    under "sigs compiled here (IR+object code)", "sigs from cache (IR+object
    code)", "sigs compiled here (IR+asm)" or "sigs recompiled (IR+asm)";
    ``forbidden`` lists each offending IR or assembly line, prefixed with the
    signature and "IR:", "asm:" or "object asm:". Empty when clean.
    """
    counts, forbidden = Counter(), []
    for signature in dispatcher.signatures:
        source, texts = _texts(dispatcher, signature)
        counts[f"sigs {source}"] += 1
        for label, text in texts:
            if label == "object symbols":
                found = [f"external symbol {name}" for name in text.split()
                         if not ALLOWED_RUNTIME.fullmatch(name)]
            else:
                found, found_counts = (scan_ir if label == "IR" else scan_asm)(text)
                counts.update(found_counts)
            if label == "IR":
                calls, n = scan_calls(text)
                counts["ir calls"] += n
                found += [c for c in calls if c.split(": ", 1)[1] not in found]
            forbidden += [f"{signature} {label}: {line}" for line in found]
    counts["forbidden"] = len(forbidden)
    return dict(counts), forbidden


def compile_ops_kernels():
    """Run every kernel of pafree.ops once on small float32 inputs, compiling it."""
    from .. import ops
    from ..ops import adamw, cpu, patches, unbuffered
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
    ops.pam_matmul_exact_grads(x, x.T, np.ones((3, 3), np.float32))
    p, g, m, v = np.linspace(-1.0, 1.0, 32, dtype=np.float32).reshape(4, 8).copy()
    adamw.adamw_pa_update(p, g, m, v, *np.array([0.1, 0.001, 0.01, 1.0, 1e-8, 0.01], np.float32))
    long = np.linspace(-1.0, 1.0, 300, dtype=np.float32)
    unbuffered.pairwise_sum(long, 0, long.size)       # called from the reductions: compiled
    unbuffered._pairwise_block(long, 0, 100)           # here too, so they have signatures
    unbuffered.reduce_sum(x, 0), unbuffered.reduce_sum(x, 1), unbuffered.first_max(x, 1)
    unbuffered.integer_shift(x, 1)
    unbuffered.scatter_add(np.zeros((3, 4), np.float32), np.array([0, 2, 0]), x)
    geometry = ((2, 2), (1, 1), (1, 1))
    patches.fold(patches.unfold(x.reshape(1, 1, 3, 4), *geometry), (1, 1, 3, 4), *geometry)


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
