"""Exhaustive check: palog2, paexp2 and pasqrt on all 2**32 float32 bit patterns.

    python benchmarks/exhaustive.py [--ops palog2 paexp2 pasqrt] [--chunk-bits 22]
    python benchmarks/exhaustive.py --derived      # paexp/palog error by input range

Every bit pattern (NaNs, infinities, zeros, subnormals included) goes through
the Numba kernel and through an independent reference written from SPEC's E/M
equations (tests/reference.py: float64 math compiled to ufuncs, no bit-pattern adds); the
two must agree bit for bit. Prints the mismatches (if any) and the runtime.
Also run by ``pytest -m slow tests/test_ops.py``.

``--derived`` instead measures the error of paexp and palog, which grows with
the input range, on every 16th float32 bit pattern of each range.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference  # noqa: E402

from pafree.ops import cpu  # noqa: E402

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
    args = parser.parse_args(argv)
    if args.derived:
        derived_errors()
        return 0
    start = time.perf_counter()
    result = check(args.ops, args.chunk_bits)
    elapsed = time.perf_counter() - start
    for op, (count, first) in result.items():
        print(f"{op}: {count} mismatches" + (f", first {[hex(b) for b in first]}" if count else ""))
    print(f"runtime {elapsed:.0f} s for {len(args.ops)} ops x 2**32 inputs")
    return int(any(count for count, _ in result.values()))


if __name__ == "__main__":
    sys.exit(main())
