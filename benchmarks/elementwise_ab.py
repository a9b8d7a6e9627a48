"""The float32 elementwise ops of this tree against those of a git revision, alternately in one process.

    python benchmarks/elementwise_ab.py REV [--n 4000000] [--repeat 21] [--ops pam pad ...]

For a change to the bit logic (pafree/ops/bits.py): imports the revision's
``pafree/ops`` beside this tree's (as benchmarks/gemm_ab.py does), checks that
both give the same bits, and times each op's public entry point on the
inputs of benchmarks/elementwise.py, old and new alternately, in process CPU
time (run it with NUMBA_NUM_THREADS=1). Prints the medians and new/old.
"""
import argparse
import time

import numpy as np

from elementwise import CASES, inputs       # benchmarks/elementwise.py
from gemm_ab import import_ops_at           # benchmarks/gemm_ab.py
from pafree import ops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="git revision to compare with, e.g. main")
    parser.add_argument("--n", type=int, default=4_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--ops", nargs="+", default=[case[0] for case in CASES],
                        choices=[case[0] for case in CASES])
    args = parser.parse_args()
    old = import_ops_at(args.rev)
    print(f"new: {ops.__file__}\nold: {old.__file__} ({args.rev})")
    print(f"{args.n:,} float32 elements, median process CPU time of {args.repeat} calls")
    print(f"{'op':>7} {'old ms':>8} {'new ms':>8} {'new/old':>7}")
    rng = np.random.default_rng(0)
    for name, _, _, count, kind in (case for case in CASES if case[0] in args.ops):
        data = inputs(kind, count, args.n, rng)
        sides = (getattr(old, name), getattr(ops, name))
        results = [fn(*data) for fn in sides]              # compiles, and the bits must agree
        assert np.array_equal(results[0].view(np.int32), results[1].view(np.int32)), name
        times = ([], [])
        for _ in range(args.repeat):
            for side, fn in enumerate(sides):
                start = time.process_time()
                fn(*data)
                times[side].append(time.process_time() - start)
        t_old, t_new = (float(np.median(t)) * 1e3 for t in times)
        print(f"{name:>7} {t_old:8.2f} {t_new:8.2f} {t_new / t_old:7.3f}")


if __name__ == "__main__":
    main()
