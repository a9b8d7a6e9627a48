"""What the CPU kernels are compiled for on this machine, read once from /proc/cpuinfo and
/sys (docs/gemm.md, "Per CPU").

The one choice that differs between the CPUs measured is the vector width of the loops
(``vector_bits``). The GEMM tile loops build a kernel variant per width
(``forward.gemm_kernels``, ``grads.derivative_kernels``); the elementwise loops of cpu.py and
AdamW's take this CPU's (``jit.prefer_vector_width``). Every width gives the same bits. Tile
shapes, K chunks, loop choice and thread split suit the caches of both Intel and AMD cores
as they are (the reasons are in docs/gemm.md).
"""
import functools
from collections import namedtuple
from pathlib import Path

# vendor_id, "model name" and flags of /proc/cpuinfo; caches: {(level, type): bytes} of cpu0
CpuInfo = namedtuple("CpuInfo", "vendor model_name flags caches")

VECTOR_BITS = (256, 512)          # the compiled variants
SIZE_SHIFT = {"K": 10, "M": 20, "G": 30}


def cache_bytes(text):
    """A /sys cache size such as '48K' or '2048K' in bytes."""
    text = text.strip()
    if text[-1:] in SIZE_SHIFT:
        return int(text[:-1]) << SIZE_SHIFT[text[-1]]
    return int(text)


@functools.cache
def cpu_info():
    """This machine's CpuInfo (fields it cannot read are 'unknown' / empty)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        first = ""
    fields = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            caches[(level, kind)] = cache_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue
    return CpuInfo(fields.get("vendor_id", "unknown"), fields.get("model name", "unknown"),
                   frozenset(fields.get("flags", "").split()), caches)


def vector_bits(cpu):
    """512 where the CPU has AVX-512: the MR x NR tiles then fit the 32 zmm registers.
    LLVM compiles for 512 on AMD Zen 4/5 by itself but for 256 on Intel AVX-512
    cores (its guard against their 512-bit clock drop), which halves the terms per
    instruction, spills the forward tile's 32 ymm accumulators and makes the
    memory-bound elementwise loops issue twice the instructions."""
    return 512 if "avx512f" in cpu.flags else 256


VECTOR_BITS_HERE = vector_bits(cpu_info())


def kernel_name(name, bits):
    """A kernel's name in pafree.ops.jit.KERNELS: the plain name for this CPU's variant."""
    return name if bits == VECTOR_BITS_HERE else f"{name}_{bits}"
