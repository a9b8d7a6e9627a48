"""Exact-derivative PAM GEMMs beside the forward PAM GEMM and float32 BLAS, in one process.

    python benchmarks/gemm_grads.py [--rounds 5]

Prints, per shape (M x K x N: A is M x K, B is K x N), data kind and thread
count, the best time of ``pam_matmul_exact_grads(a, b, dy)`` (both
derivatives), of the forward ``pam_matmul(a, b)`` and of the float baseline's
two backward products ``dy @ b^T`` and ``a^T @ dy`` (numpy float32), and the
ratios. The plain loops over the scalar ``bits.pam_slope``/``bits.pam`` that
these kernels replaced measured, on this machine, 1 thread: 15.4 ms at 256^3
(36x the forward), 121 ms at 512^3 (38x), 12.0 ms at 768x64x256 (29x).

Measurement as in benchmarks/gemm.py (alternating rounds, each side's best,
a pause after sgemm so OpenBLAS's spinning threads sleep). Data: "well" is
standard normal (the fast loops); "general" has a ReLU'd A and dY (half zeros)
with 10% tiny entries whose terms underflow (the masked loops). The data
set-up and the float baseline use ordinary float arithmetic on purpose.
"""
import argparse
import os
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from gemm import OPENBLAS_SLEEP_S, best_time, make   # benchmarks/gemm.py (re-executes
from pafree.ops import pam_matmul, pam_matmul_exact_grads   # without OPENBLAS_* settings)

# (batch, M, K, N): square, a transformer block's projections, attention heads
SHAPES = [((), 256, 256, 256), ((), 512, 512, 512), ((), 1024, 1024, 1024),
          ((), 768, 64, 256), ((), 768, 256, 64), ((64,), 128, 64, 128)]


def measure(a, b, dy, threads, rounds):
    """Best wall times (exact grads, forward PAM GEMM, float backward) over alternating rounds."""
    numba.set_num_threads(threads)
    def float_backward():
        return dy @ b.swapaxes(-1, -2), a.swapaxes(-1, -2) @ dy

    grads = forward = blas = float("inf")
    for _ in range(rounds):
        with threadpool_limits(threads, user_api="blas"):
            blas = min(blas, best_time(float_backward)[0])
        time.sleep(OPENBLAS_SLEEP_S)
        forward = min(forward, best_time(lambda: pam_matmul(a, b))[0])
        grads = min(grads, best_time(lambda: pam_matmul_exact_grads(a, b, dy))[0])
    return grads, forward, blas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"numba {numba.__version__}, cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    print(f"{'M x K x N':>20} {'data':>8} {'thr':>3} {'grads ms':>9} {'fwd ms':>8} {'float ms':>9} "
          f"{'grads/fwd':>9} {'grads/float':>11}")
    for batch, m, k, n in SHAPES:
        label = "".join(f"{z}x(" for z in batch) + f"{m}x{k}x{n}" + ")" * len(batch)
        for kind in ("well", "general"):
            a, b = make(batch + (m, k), kind, rng), make(batch + (k, n), "well", rng)
            dy = make(batch + (m, n), kind, rng)
            for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
                grads, forward, blas = measure(a, b, dy, threads, args.rounds)
                print(f"{label:>20} {kind:>8} {threads:>3} {grads * 1e3:9.2f} "
                      f"{forward * 1e3:8.2f} {blas * 1e3:9.2f} {grads / forward:9.2f} "
                      f"{grads / blas:11.2f}", flush=True)
    print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
