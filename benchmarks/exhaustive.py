"""Exhaustive check: palog2, paexp2 and pasqrt on all 2**32 float32 bit patterns.

    python benchmarks/exhaustive.py [--ops palog2 paexp2 pasqrt] [--chunk-bits 22]

Every bit pattern (NaNs, infinities, zeros, subnormals included) goes through
the Numba kernel and through an independent reference written from SPEC's E/M
equations (tests/reference.py: float64 math compiled to ufuncs, no bit-pattern adds); the
two must agree bit for bit. Prints the mismatches (if any) and the runtime.
Also run by ``pytest -m slow tests/test_ops.py``.
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    parser.add_argument("--chunk-bits", type=int, default=22)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = check(args.ops, args.chunk_bits)
    elapsed = time.perf_counter() - start
    for op, (count, first) in result.items():
        print(f"{op}: {count} mismatches" + (f", first {[hex(b) for b in first]}" if count else ""))
    print(f"runtime {elapsed:.0f} s for {len(args.ops)} ops x 2**32 inputs")
    return int(any(count for count, _ in result.values()))


if __name__ == "__main__":
    sys.exit(main())
