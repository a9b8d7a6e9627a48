"""Time each PA elementwise op beside its float counterpart on 10 million float32 values.

    python benchmarks/elementwise.py [--n 10000000] [--repeat 15] [--ops pam palog2 ...]

Both sides go through their public entry points (``pafree.ops.pam(a, b)`` against
``np.multiply(a, b)``, each allocating its result) and are timed alternately in
the same run; the printed figure is the median PA time over the median float time. Two
settings: one thread (``numba.set_num_threads(1)``; NumPy ufuncs are single
threaded), and all threads, where the float counterpart runs the same ufunc
over one contiguous chunk per thread in a thread pool (ufuncs release the GIL),
so both sides use every core. Target: every ratio at most 1.2.
"""
import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from pafree import ops

# PA op, float counterpart, input generator (positive inputs where the float op needs them)
CASES = [
    ("pam", ops.pam, np.multiply, 2, "normal"),
    ("pad", ops.pad, np.divide, 2, "positive"),
    ("paexp2", ops.paexp2, np.exp2, 1, "exponent"),
    ("palog2", ops.palog2, np.log2, 1, "positive"),
    ("pasqrt", ops.pasqrt, np.sqrt, 1, "positive"),
]


def inputs(kind, count, n, rng):
    if kind == "normal":
        return [rng.standard_normal(n, dtype=np.float32) for _ in range(count)]
    if kind == "positive":
        return [rng.lognormal(0.0, 2.0, n).astype(np.float32) for _ in range(count)]
    return [rng.uniform(-20.0, 20.0, n).astype(np.float32) for _ in range(count)]


def chunked(ufunc, pool, threads):
    """The ufunc run over one contiguous chunk per thread."""
    def run(*args):
        out = np.empty_like(args[0])
        bounds = np.linspace(0, out.size, threads + 1).astype(int)
        jobs = [pool.submit(ufunc, *(a[lo:hi] for a in args), out=out[lo:hi])
                for lo, hi in zip(bounds[:-1], bounds[1:])]
        for job in jobs:
            job.result()
        return out
    return run


def median_times(pa_op, float_op, args, repeat):
    """Median wall times of the two ops, timed alternately so that both see the same load."""
    pa_op(*args), float_op(*args)                # compile / warm up
    times = {pa_op: [], float_op: []}
    for _ in range(repeat):
        for fn in (pa_op, float_op):
            start = time.perf_counter()
            fn(*args)
            times[fn].append(time.perf_counter() - start)
    return float(np.median(times[pa_op])), float(np.median(times[float_op]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--ops", nargs="+", default=[case[0] for case in CASES],
                        choices=[case[0] for case in CASES])
    args = parser.parse_args(argv)
    cases = [case for case in CASES if case[0] in args.ops]
    rng = np.random.default_rng(0)
    max_threads = numba.config.NUMBA_NUM_THREADS
    data = {name: inputs(kind, count, args.n, rng) for name, _, _, count, kind in cases}
    print(f"{args.n:,} float32 elements, median of {args.repeat} runs")
    print(f"{'threads':>7} {'op':>7} {'PA ms':>8} {'float ms':>9} {'ratio':>6}")
    worst = 0.0
    with ThreadPoolExecutor(max_threads) as pool:
        for threads in sorted({1, max_threads}):
            numba.set_num_threads(threads)
            for name, pa_op, float_op, _, _ in cases:
                reference = float_op if threads == 1 else chunked(float_op, pool, threads)
                t_pa, t_float = median_times(pa_op, reference, data[name], args.repeat)
                worst = max(worst, t_pa / t_float)
                print(f"{threads:>7} {name:>7} {t_pa * 1e3:8.2f} {t_float * 1e3:9.2f} "
                      f"{t_pa / t_float:6.2f}")
    print(f"worst ratio {worst:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
