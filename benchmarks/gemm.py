"""PAM GEMM against numpy's float32 sgemm, side by side in one process.

    python benchmarks/gemm.py [--rounds 9] [--quick]

Prints the CPU, the limits its vector ports put on the ratio and why
(pafree.bench.gemm_limits), then per shape, data kind and thread count the best
time of ``pafree.ops.pam_matmul`` and of numpy ``A @ B`` (float32), their ratio,
ratio / limit and the target (1.15x the limit) for the large products.

Fairness:
- OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment
  (the script re-executes itself without them), so OpenBLAS picks its own
  kernel; the kernel threadpoolctl reports is printed.
- OpenBLAS worker threads spin for a while after each sgemm and would steal
  the cores from Numba's threads: each PAM measurement starts after a pause
  long enough for them to go to sleep (OPENBLAS_THREAD_TIMEOUT is left at its
  default so sgemm keeps its spinning between its own back-to-back calls).
- The machine is a VM on a shared host whose speed drifts by tens of
  percent over seconds. The two sides are therefore measured in alternating
  rounds (sgemm three times, pause, PAM three times, pause), and each side's
  time is its best over all rounds, so both saw the same quiet moments.
  The 1-thread rows also print the ratio of process CPU times (insensitive
  to time slicing, still sensitive to shared caches).
- Data: "well" is standard normal (every product normal: the fast path);
  "general" is ReLU'd normal (half zeros) with 10% of the entries scaled by
  2**-120 so that products underflow (the masked path).
This is the float baseline's benchmark: the data set-up uses ordinary float
arithmetic on purpose.
"""
import argparse
import os
import sys

HIDDEN_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(name in os.environ for name in HIDDEN_ENV):
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

from pafree.bench import TARGET_OVER_LIMIT, best_time, describe_cpu, gemm_limits  # noqa: E402,F401
from pafree.bench import gemm_operand as make  # noqa: E402
from pafree.bench import measure_gemm as measure  # noqa: E402
from pafree.ops import tuning  # noqa: E402

# (label, batch, M, K, N, whether the CPU's limits and the target apply: the large products)
SHAPES = [
    ("256^3", (), 256, 256, 256, False),
    ("512^3", (), 512, 512, 512, False),
    ("1024^3", (), 1024, 1024, 1024, True),
    ("2048^3", (), 2048, 2048, 2048, True),
    ("4096x256x1024", (), 4096, 256, 1024, True),
    ("64x(128x64@64x128)", (64,), 128, 64, 128, False),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="skip 2048^3")
    args = parser.parse_args()

    np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)      # load BLAS
    for lib in threadpool_info():
        print(f"BLAS: {lib.get('internal_api')} {lib.get('version')} "
              f"kernel={lib.get('architecture')} threads={lib.get('num_threads')}")
    print(f"numba {numba.__version__}, threading layer {numba.config.THREADING_LAYER}, "
          f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    cpu = tuning.cpu_info()
    well, general, why = gemm_limits(cpu)
    print(f"CPU: {describe_cpu(cpu)}")
    print("limits assumed (PAM time / sgemm time): " + (
        "none" if well is None else f"{well:.1f}x well-scaled, {general:.1f}x general")
        + f"; {why}. Target: ratio <= {TARGET_OVER_LIMIT} x limit")
    all_threads = numba.config.NUMBA_NUM_THREADS
    rng = np.random.default_rng(0)
    print(f"{'shape':>20} {'data':>8} {'thr':>3} {'sgemm ms':>9} {'pam ms':>9} "
          f"{'ratio':>6} {'cpu ratio':>9} {'r/limit':>7}  target")
    for label, batch, m, k, n, limited in SHAPES:
        if args.quick and m == 2048:
            continue
        for kind, limit in (("well", well), ("general", general)):
            a = make(batch + (m, k), kind, rng)
            b = make(batch + (k, n), "well", rng)
            for threads in sorted({1, all_threads}):
                (pam_wall, pam_cpu), (blas_wall, blas_cpu) = measure(a, b, threads, args.rounds)
                ratio = pam_wall / blas_wall
                cpu_ratio = f"{pam_cpu / blas_cpu:9.2f}" if threads == 1 else " " * 9
                over = f"{ratio / limit:7.2f}" if limit and limited else " " * 7
                target = limit and limited and TARGET_OVER_LIMIT * limit
                verdict = f"{target:.2f} " + ("ok" if ratio <= target else "MISSED") \
                    if target else ""
                print(f"{label:>20} {kind:>8} {threads:>3} {blas_wall * 1e3:9.2f} "
                      f"{pam_wall * 1e3:9.2f} {ratio:6.2f} {cpu_ratio} {over}  {verdict}",
                      flush=True)
    print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
