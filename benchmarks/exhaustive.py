"""Exhaustive check: palog2, paexp2 and pasqrt on all 2**32 float32 bit patterns.

    python benchmarks/exhaustive.py [--ops palog2 paexp2 pasqrt] [--chunk-bits 22]
    python benchmarks/exhaustive.py --derived      # paexp/palog error by input range
    python benchmarks/exhaustive.py --formats [bfloat16 float16]   # the 16-bit formats

Every bit pattern (NaNs, infinities, zeros, subnormals included) goes through
the Numba kernel and through an independent reference written from SPEC's E/M
equations (tests/reference.py: float64 math compiled to ufuncs, no bit-pattern adds); the
two must agree bit for bit. Prints the mismatches (if any) and the runtime.
Also run by ``pytest -m slow tests/test_ops.py``.

``--formats`` checks the 16-bit formats (SPEC section 7) instead: PAM and PAD on
all 2**32 input pairs, the kernel against an independent integer version of the
E/M equations compiled with Numba (tests/reference_formats.py: fast_pam, fast_pad),
which in turn must agree with the exact Fraction reference on every first operand
(2**16 pairs) and every pair of special values; and every unary op (with the
exact slopes) on all 2**16 inputs against the exact Fraction reference.

``--derived`` instead measures the error of paexp and palog, which grows with
the input range, on every 16th float32 bit pattern of each range.
"""
import argparse
import sys
import time
from pathlib import Path

import ml_dtypes
import numba
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference  # noqa: E402
import reference_formats  # noqa: E402

from pafree.ops import bits, cpu, elementwise  # noqa: E402

REFERENCES = {
    "palog2": reference.fast_palog2,
    "paexp2": reference.fast_paexp2,
    "pasqrt": reference.fast_pasqrt,
}


def check(ops=tuple(REFERENCES), chunk_bits=22, progress=True):
    """{op: (mismatch count, first mismatching bit patterns)} over all 2**32 inputs."""
    chunk = 1 << chunk_bits
    mismatches = {op: [0, []] for op in ops}
    for start in tqdm(range(0, 1 << 32, chunk), disable=not progress, unit="chunk",
                      desc=f"2**32 patterns in chunks of 2**{chunk_bits}"):
        bits = np.arange(start, start + chunk, dtype=np.uint32).view(np.int32)
        for op in ops:
            got = cpu.unary(op, bits.view(np.float32)).view(np.int32)
            bad = np.nonzero(got != REFERENCES[op](bits).view(np.int32))[0]
            mismatches[op][0] += bad.size
            mismatches[op][1] += [int(b) & 0xFFFFFFFF for b in bits[bad[:5 - len(mismatches[op][1])]]]
    return {op: (count, first) for op, (count, first) in mismatches.items()}


# ---- the 16-bit formats -------------------------------------------------------------------

DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16)}
FAST_PAIR = {"pam": reference_formats.fast_pam, "pad": reference_formats.fast_pad}
EVERY_PATTERN = np.arange(-(1 << 15), 1 << 15).astype(np.int16)


@numba.njit
def _row_mismatches(fast_op, a, got, ew, mw, first):
    """Mismatches of got[i] against fast_op(a, EVERY_PATTERN[i]); the first b's go to ``first``."""
    count = 0
    for i in range(got.size):
        b = i - (1 << 15)
        if fast_op(a, b, ew, mw) != got[i]:
            if count < first.size:
                first[count] = b
            count += 1
    return count


def check_pairs(fmt, op, progress=True):
    """(mismatches, first (a, b) pairs) of the op's kernel over all 2**32 pairs of the format."""
    f = bits.FORMATS[fmt]
    kernel = cpu.LOW_PRECISION[DTYPES[fmt]][1][op][0]          # the serial kernel
    row, got, first = np.empty_like(EVERY_PATTERN), np.empty_like(EVERY_PATTERN), np.zeros(5, np.int64)
    count, pairs = 0, []
    for a in tqdm(range(-(1 << 15), 1 << 15), disable=not progress, desc=f"{fmt} {op}", unit="row",
                  mininterval=5):
        row.fill(a)
        kernel(row, EVERY_PATTERN, got)
        bad = _row_mismatches(FAST_PAIR[op], a, got, f.EXP_BITS, f.MANT_BITS, first)
        pairs += [(a, int(b)) for b in first[:min(bad, 5 - len(pairs))]]
        count += bad
    return count, pairs


def check_fast_against_exact(fmt, op):
    """(mismatches, first pairs) of fast_pam/fast_pad against the exact Fraction reference on
    every first operand (each with a random second one) and every pair of special values."""
    f, exact = bits.FORMATS[fmt], getattr(reference_formats.FORMATS[fmt], op)
    width = 1 + f.EXP_BITS + f.MANT_BITS
    rng = np.random.default_rng(18)
    pairs = list(zip(EVERY_PATTERN.tolist(), rng.permutation(EVERY_PATTERN).tolist()))
    special = [0, 1, f.MIN_NORMAL - 1, f.MIN_NORMAL, f.ONE, f.ONE + 1, f.ONE | f.MANT, f.INF - 1,
               f.INF, f.QNAN, f.MAG, f.ONE >> 1, (f.ONE >> 1) + (f.ONE >> 2), f.ONE + (f.ONE >> 1)]
    special += [v + f.SIGN for v in special]
    pairs += [(a, b) for a in special for b in special]
    bad = [(a, b) for a, b in pairs
           if FAST_PAIR[op](a, b, f.EXP_BITS, f.MANT_BITS) != exact(a, b)]
    assert all(-(1 << (width - 1)) <= v < 1 << (width - 1) for pair in pairs for v in pair)
    return len(bad), bad[:5]


def check_unary(fmt, op):
    """(mismatches, first inputs) of the op's kernel over all 2**16 inputs, against the exact reference."""
    exact = getattr(reference_formats.FORMATS[fmt], op)
    got = cpu.unary(op, EVERY_PATTERN.view(DTYPES[fmt])).view(np.int16).tolist()
    bad = [x for x, y in zip(EVERY_PATTERN.tolist(), got) if exact(x) != y]
    return len(bad), bad[:5]


def check_formats(formats=tuple(DTYPES), progress=True):
    """{(format, check, op): (mismatches, first inputs, seconds)} for every check of the formats."""
    results = {}
    for fmt in formats:
        jobs = [("fast vs exact", op, lambda op=op: check_fast_against_exact(fmt, op)) for op in FAST_PAIR]
        jobs += [("all 2**32 pairs", op, lambda op=op: check_pairs(fmt, op, progress)) for op in FAST_PAIR]
        jobs += [("all 2**16 inputs", op, lambda op=op: check_unary(fmt, op)) for op in elementwise.UNARY]
        for check, op, job in jobs:
            start = time.perf_counter()
            count, first = job()
            results[fmt, check, op] = (count, first, time.perf_counter() - start)
            if progress:
                print(f"{fmt:>8} {check:>16} {op:>12}: {count} mismatches "
                      f"{first if count else ''} ({results[fmt, check, op][2]:.1f} s)", flush=True)
    return results


def floats_up_to(limit, stride=16):
    """Every ``stride``-th positive float32 bit pattern from the smallest normal up to limit."""
    top = int(np.float32(limit).view(np.int32))
    return np.arange(1 << 23, top + 1, stride, dtype=np.int32).view(np.float32)


def derived_errors():
    """Print paexp's relative and palog's absolute error ranges for growing input ranges."""
    print("paexp(x) / e**x - 1 over |x| <= r (normal x):")
    for r in (1, 2, 5, 10, 20, 40, 80):
        x = floats_up_to(r)
        x = np.concatenate([x, -x])
        error = cpu.unary("paexp", x).astype(np.float64) / np.exp(x.astype(np.float64)) - 1
        print(f"  r = {r:>3}: [{error.min():+.4f}, {error.max():+.4f}]")
    print("palog(x) - ln(x) over x in [2**-r, 2**r]:")
    for r in (1, 4, 16, 64, 127):
        x = floats_up_to(2.0 ** r)
        x = x[x >= 2.0 ** -r]
        error = cpu.unary("palog", x).astype(np.float64) - np.log(x.astype(np.float64))
        print(f"  r = {r:>3}: [{error.min():+.4f}, {error.max():+.4f}]")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    parser.add_argument("--chunk-bits", type=int, default=22)
    parser.add_argument("--derived", action="store_true", help="measure paexp/palog errors instead")
    parser.add_argument("--formats", nargs="*", choices=list(DTYPES),
                        help="check the 16-bit formats instead (all of them when none is named)")
    args = parser.parse_args(argv)
    if args.derived:
        derived_errors()
        return 0
    if args.formats is not None:
        start, cpu_start = time.perf_counter(), time.process_time()
        results = check_formats(args.formats or list(DTYPES))
        print(f"runtime {time.perf_counter() - start:.0f} s wall, "
              f"{time.process_time() - cpu_start:.0f} s CPU (numba threads: {numba.get_num_threads()})")
        return int(any(count for count, _, _ in results.values()))
    start = time.perf_counter()
    result = check(args.ops, args.chunk_bits)
    elapsed = time.perf_counter() - start
    for op, (count, first) in result.items():
        print(f"{op}: {count} mismatches" + (f", first {[hex(b) for b in first]}" if count else ""))
    print(f"runtime {elapsed:.0f} s for {len(args.ops)} ops x 2**32 inputs")
    return int(any(count for count, _ in result.values()))


if __name__ == "__main__":
    sys.exit(main())
