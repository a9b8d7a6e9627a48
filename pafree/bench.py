"""``pafree bench [--quick]``: pafree's headline speed ratios on this machine, as a table.

Each row times a pafree operation beside its float counterpart in one process,
alternately, so that both see the same machine: the PAM GEMM against numpy's float32
sgemm (OpenBLAS), each elementwise PA op against its numpy ufunc, and one training step
per task in pa mode against standard mode. The GEMM rows also give the limit this CPU
puts on the ratio (``gemm_limits``) and ratio / limit. The benchmarks/ scripts print the
detailed tables and take their timing helpers, data and limits from here.

This is a benchmark, not a PA code path: the data set-up and the ratios use ordinary
float arithmetic.
"""
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .ops import tuning

OPENBLAS_SLEEP_S = 0.3     # longer than OpenBLAS's default spin (2**28 cycles) after a call
TARGET_OVER_LIMIT = 1.15   # GEMM target: within 1.15x of the CPU's limit
ELEMENTWISE_TARGET = 1.2   # memory bound: both sides stream at the same speed
STEP_TARGET = 2.0


# ------------------------------------------------------------------ the CPU

def describe_cpu(cpu):
    """One line: model, vendor, caches, and the vector width the loops are compiled for."""
    l1d = cpu.caches.get((1, "Data"), 0) >> 10
    l2 = cpu.caches.get((2, "Unified"), 0) >> 10
    avx = "AVX-512" if "avx512f" in cpu.flags else "AVX2" if "avx2" in cpu.flags else "no AVX2"
    return (f"{cpu.model_name} ({cpu.vendor}, {avx}, L1d {l1d} KiB, L2 {l2} KiB per core, "
            f"{os.cpu_count()} cpus); loops compiled for {tuning.vector_bits(cpu)}-bit vectors")


def gemm_limits(cpu):
    """(well-scaled, general, why): the least PAM GEMM / sgemm time ratios the CPU's
    vector ports allow, or (None, None, why) for a CPU with no assumed limit."""
    if "avx512f" in cpu.flags and cpu.vendor == "GenuineIntel":
        return 2.0, 3.0, ("Intel AVX-512: 512-bit int adds, float adds and FMAs all issue on "
                          "ports 0 and 5, so a term's int add + float add is 2 uops per 16 "
                          "terms against sgemm's one FMA; the masked loop's compare into a "
                          "mask register adds a third (port 5 only)")
    if "avx512f" in cpu.flags and cpu.vendor == "AuthenticAMD":
        return 1.0, 1.5, ("AMD Zen 4/5: vector int adds and float adds issue on different "
                          "pipes, so int add + float add run at sgemm's one FMA per 16 terms; "
                          "the masked loop's compare costs about half again")
    return None, None, "no limit assumed for this CPU (measured: Intel AVX-512, AMD Zen 4/5)"


# ------------------------------------------------------------------ timing

def best_time(fn, calls=3):
    """(best wall time, best process CPU time) over ``calls`` calls after a warm-up."""
    fn()
    wall = cpu = float("inf")
    for _ in range(calls):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def gemm_operand(shape, kind, rng):
    """"well": standard normal (every product normal: the fast loop); "general": ReLU'd
    normal (half zeros) with 10% of the entries scaled by 2**-120 so that products
    underflow (the masked loop)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "general":
        x = np.maximum(x, 0)
        tiny = rng.random(shape) < 0.1
        x[tiny] = np.ldexp(x[tiny], -120)
    return x


def measure_gemm(a, b, threads, rounds):
    """((pam wall, cpu), (sgemm wall, cpu)): each side's best over alternating rounds, each
    PAM round after a pause long enough for OpenBLAS's spinning threads to sleep."""
    from threadpoolctl import threadpool_limits

    from .ops import pam_matmul
    numba.set_num_threads(threads)
    pam = blas = (float("inf"), float("inf"))
    for _ in range(rounds):
        with threadpool_limits(threads, user_api="blas"):
            blas = tuple(map(min, blas, best_time(lambda: a @ b)))
        time.sleep(OPENBLAS_SLEEP_S)
        pam = tuple(map(min, pam, best_time(lambda: pam_matmul(a, b))))
    return pam, blas


def elementwise_cases():
    """(name, PA op, float ufunc, operand count, input kind) of benchmarks/elementwise.py."""
    from . import ops
    return [("pam", ops.pam, np.multiply, 2, "normal"),
            ("pad", ops.pad, np.divide, 2, "positive"),
            ("paexp2", ops.paexp2, np.exp2, 1, "exponent"),
            ("palog2", ops.palog2, np.log2, 1, "positive"),
            ("pasqrt", ops.pasqrt, np.sqrt, 1, "positive")]


def elementwise_inputs(kind, count, n, rng):
    if kind == "normal":
        return [rng.standard_normal(n, dtype=np.float32) for _ in range(count)]
    if kind == "positive":
        return [rng.lognormal(0.0, 2.0, n).astype(np.float32) for _ in range(count)]
    return [rng.uniform(-20.0, 20.0, n).astype(np.float32) for _ in range(count)]


def chunked(ufunc, pool, threads):
    """The ufunc run over one contiguous chunk per thread (ufuncs release the GIL)."""
    def run(*args):
        out = np.empty_like(args[0])
        bounds = np.linspace(0, out.size, threads + 1).astype(int)
        jobs = [pool.submit(ufunc, *(a[lo:hi] for a in args), out=out[lo:hi])
                for lo, hi in zip(bounds[:-1], bounds[1:])]
        for job in jobs:
            job.result()
        return out
    return run


def median_times(ops, args, repeat):
    """Median wall time of each op on args, the ops timed in turn so that all see the same load."""
    for fn in ops:
        fn(*args)                                # compile / warm up
    times = [[] for _ in ops]
    for _ in range(repeat):
        for fn, row in zip(ops, times):
            start = time.perf_counter()
            fn(*args)
            row.append(time.perf_counter() - start)
    return [float(np.median(row)) for row in times]


def alternate_steps(runs, batch, steps, step):
    """Per run, ``step(run, batch)``'s result for ``steps`` rounds, the runs taking turns,
    each step after a pause (neither library's idle spinning threads slow the other)."""
    rows = [[] for _ in runs]
    for _ in range(steps):
        for run, row in zip(runs, rows):
            time.sleep(OPENBLAS_SLEEP_S)
            row.append(step(run, batch))
    return rows


def step_seconds(run, batch):
    start = time.perf_counter()
    run.train_step(batch)
    return time.perf_counter() - start


# ------------------------------------------------------------------ the table

def rows(quick, sizes=None, elements=None, tasks=None):
    """Yield (what, threads, pafree s, float s, limit or None, target) per measurement."""
    from .run import build
    from .tasks import TASKS, cifar10
    cpu = tuning.cpu_info()
    well, general, _ = gemm_limits(cpu)
    rounds = 3 if quick else 7
    all_threads = sorted({1, numba.config.NUMBA_NUM_THREADS})
    rng = np.random.default_rng(0)
    for n in sizes or ((1024,) if quick else (1024, 2048)):
        for kind, limit in (("well", well), ("general", general)):
            a, b = gemm_operand((n, n), kind, rng), gemm_operand((n, n), "well", rng)
            for threads in all_threads:
                (pam, _), (blas, _) = measure_gemm(a, b, threads, rounds)
                target = None if limit is None else TARGET_OVER_LIMIT * limit
                yield f"GEMM {n}^3 {kind}", threads, pam, blas, limit, target
    count = elements or 10_000_000       # 40 MB per operand: memory bound, as in use
    with ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS) as pool:
        for threads in all_threads:
            numba.set_num_threads(threads)
            for name, pa_op, float_op, operands, kind in elementwise_cases():
                args = elementwise_inputs(kind, operands, count, rng)
                reference = float_op if threads == 1 else chunked(float_op, pool, threads)
                # 15 rounds even when quick (3 s in all): fewer left single outliers in the median
                pa, fl = median_times([pa_op, reference], args, 15)
                yield f"{name} x {count:,}", threads, pa, fl, None, ELEMENTWISE_TARGET
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for task in tasks or TASKS:
        with tempfile.TemporaryDirectory() as data_dir:
            overrides = {}
            if task == "cifar10":        # random records of the real layout: no data set needed
                cifar10.write_random_files(data_dir, 2 * cifar10.DEFAULTS["batch_size"])
                overrides["data_dir"] = data_dir
            runs = [build(task, mode, seed=0, **overrides) for mode in ("pa", "standard")]
        batch = runs[1].batch(0)
        for run in runs:
            run.train_step(batch)                      # compile and warm up
        pa, standard = (float(np.median(r)) for r in
                        alternate_steps(runs, batch, 3 if quick else 9, step_seconds))
        yield f"train step {task}", numba.config.NUMBA_NUM_THREADS, pa, standard, None, \
            STEP_TARGET


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="1024^3 only, fewer rounds and repeats, 3 steps: about a minute")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="GEMM sizes n (n^3), default 1024 (quick) or 1024 2048")
    parser.add_argument("--elements", type=int, default=None,
                        help="elementwise operand size, default 10M")
    parser.add_argument("--tasks", nargs="+", default=None, help="default: every task")


def run(args):
    cpu = tuning.cpu_info()
    well, general, why = gemm_limits(cpu)
    print(f"CPU: {describe_cpu(cpu)}")
    limits = "none" if well is None else f"{well:.1f}x well-scaled, {general:.1f}x general"
    print(f"GEMM limits assumed (PAM time / sgemm time): {limits}; {why}")
    print(f"{'what':>24} {'thr':>3} {'pafree ms':>10} {'float ms':>9} {'ratio':>6} "
          f"{'limit':>6} {'r/limit':>7} {'target':>7}")
    missed = 0
    for what, threads, pa, fl, limit, target in rows(args.quick, args.sizes, args.elements,
                                                     args.tasks):
        ratio = pa / fl
        over = "" if limit is None else f"{limit:6.2f} {ratio / limit:7.2f}"
        verdict = "" if target is None else f"<= {target:.2f} " + (
            "ok" if ratio <= target else "MISSED")
        missed += target is not None and ratio > target
        print(f"{what:>24} {threads:>3} {pa * 1e3:10.2f} {fl * 1e3:9.2f} {ratio:6.2f} "
              f"{over:>14} {verdict}", flush=True)
    print(f"{missed} target(s) missed; load average now {os.getloadavg()[0]:.2f} "
          "(other work on the machine inflates the ratios)")
    return 0
