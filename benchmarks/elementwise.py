"""Time each PA elementwise op beside its float counterpart on 10 million float32 values.

    python benchmarks/elementwise.py [--n 10000000] [--repeat 15] [--ops pam palog2 ...] [--widths]

Both sides go through their public entry points (``pafree.ops.pam(a, b)`` against
``np.multiply(a, b)``, each allocating its result) and are timed alternately in
the same run; the printed figure is the median PA time over the median float time. Two
settings: one thread (``numba.set_num_threads(1)``; NumPy ufuncs are single
threaded), and all threads, where the float counterpart runs the same ufunc
over one contiguous chunk per thread in a thread pool (ufuncs release the GIL),
so both sides use every core. Target: every ratio at most 1.2.

``--widths`` also times the kernels compiled for every vector width (pafree/ops/tuning.py),
in the same rotation, to check the width this CPU gets.
"""
import argparse
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from pafree.bench import chunked, describe_cpu, elementwise_cases, median_times
from pafree.bench import elementwise_inputs as inputs
from pafree.ops import bits, cpu, elementwise, tuning

CASES = elementwise_cases()


def at_width(name, vector_bits):
    """The float32 op ``name`` on same-shaped operands, its kernels compiled for
    vector_bits-wide vectors (allocating its result, as the public op does)."""
    make = cpu.unary_kernels if name in elementwise.UNARY else cpu.binary_kernels
    serial, parallel = make(getattr(bits.FLOAT32, name), tuning.kernel_name(name, vector_bits),
                            vector_bits)

    def run(*args):
        out = np.empty(args[0].shape, np.float32)
        kernel = parallel if out.size >= cpu.PARALLEL_MIN else serial
        kernel(*(x.view(np.int32) for x in args), out.view(np.int32))
        return out
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--ops", nargs="+", default=[case[0] for case in CASES],
                        choices=[case[0] for case in CASES])
    parser.add_argument("--widths", action="store_true",
                        help="also time the kernels of every vector width")
    args = parser.parse_args(argv)
    cases = [case for case in CASES if case[0] in args.ops]
    widths = tuning.VECTOR_BITS if args.widths else ()
    rng = np.random.default_rng(0)
    max_threads = numba.config.NUMBA_NUM_THREADS
    data = {name: inputs(kind, count, args.n, rng) for name, _, _, count, kind in cases}
    print(f"CPU: {describe_cpu(tuning.cpu_info())}")
    print(f"{args.n:,} float32 elements, median of {args.repeat} runs")
    print(f"{'threads':>7} {'op':>7} {'PA ms':>8} {'float ms':>9} {'ratio':>6}"
          + "".join(f" {f'{w}-bit ratio':>13}" for w in widths))
    worst = 0.0
    with ThreadPoolExecutor(max_threads) as pool:
        for threads in sorted({1, max_threads}):
            numba.set_num_threads(threads)
            for name, pa_op, float_op, _, _ in cases:
                reference = float_op if threads == 1 else chunked(float_op, pool, threads)
                variants = [at_width(name, w) for w in widths]
                t_pa, t_float, *t_widths = median_times([pa_op, reference, *variants],
                                                        data[name], args.repeat)
                worst = max(worst, t_pa / t_float)
                print(f"{threads:>7} {name:>7} {t_pa * 1e3:8.2f} {t_float * 1e3:9.2f} "
                      f"{t_pa / t_float:6.2f}" + "".join(f" {t / t_float:13.2f}" for t in t_widths))
    print(f"worst ratio {worst:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
