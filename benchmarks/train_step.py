"""Time one training step of the numbers encoder-decoder (default size), pa beside standard.

Both modes build the same model (same seed, same initial weights) and train on
the same batch; each step is forward, loss, backward, gradient clipping and the
AdamW update (PA arithmetic throughout in pa mode). Prints the median step
time per mode, the ratio pa / standard and a breakdown of the median step:

  GEMM              time inside the matmul primitives (pam_matmul / fmatmul), forward and backward
  other primitives  time inside every other autograd primitive (elementwise, reductions, shapes)
  optimizer         gradient clipping and the AdamW update
  Python/tape       the rest: building the graph, the backward walk, unbroadcasting, glue

    python benchmarks/train_step.py [--steps 21] [--batch-size 64]
"""
import argparse
import os
import time

from pafree import optim
from pafree.autograd import registry
from pafree.train import build

GEMM = {"pam_matmul", "fmatmul"}


class Timers:
    """Accumulates seconds per category by wrapping the primitive dispatch and the optimizer."""

    def __init__(self):
        self.seconds = {}
        self.inside_optimizer = False

    def add(self, key, dt):
        self.seconds[key] = self.seconds.get(key, 0.0) + dt

    def install(self, run):
        call = registry.Primitive.__call__
        timers = self

        def timed_call(prim, *args, **params):
            t0 = time.perf_counter()
            try:
                return call(prim, *args, **params)
            finally:
                if not timers.inside_optimizer:
                    timers.add("GEMM" if prim.name in GEMM else "other primitives",
                               time.perf_counter() - t0)

        def timed(fn):
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                timers.inside_optimizer = True
                try:
                    return fn(*args, **kwargs)
                finally:
                    timers.inside_optimizer = False
                    timers.add("optimizer", time.perf_counter() - t0)
            return wrapper

        registry.Primitive.__call__ = timed_call
        optim.clip_grad_norm = timed(optim.clip_grad_norm)
        run.optimizer.step = timed(run.optimizer.step)


def measure(mode, steps, batch_size):
    run = build("numbers", mode, seed=0, batch_size=batch_size)
    batch = run.batch(0)
    for _ in range(3):                                   # compile and warm up
        run.train_step(batch)
    timers = Timers()
    saved = registry.Primitive.__call__, optim.clip_grad_norm
    timers.install(run)
    rows = []
    try:
        for _ in range(steps):
            timers.seconds = {}
            t0 = time.perf_counter()
            run.train_step(batch)
            total = time.perf_counter() - t0
            rows.append(dict(timers.seconds, total=total))
    finally:
        registry.Primitive.__call__, optim.clip_grad_norm = saved
    median = sorted(rows, key=lambda r: r["total"])[len(rows) // 2]   # the median step
    accounted = sum(v for k, v in median.items() if k != "total")
    median["Python/tape"] = median["total"] - accounted
    return median, run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=21)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    results = {}
    for mode in ("standard", "pa"):
        results[mode], run = measure(mode, args.steps, args.batch_size)
    hp = run.hparams
    print(f"numbers encoder-decoder: d_model {hp['d_model']}, {hp['n_enc_layers']}+"
          f"{hp['n_dec_layers']} layers, d_ff {hp['d_ff']}, batch {args.batch_size}, "
          f"{run.model.num_parameters():,} parameters; median of {args.steps} steps")
    print(f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'ms per step':18s} {'standard':>10s} {'pa':>10s} {'pa/std':>8s}")
    for key in ("GEMM", "other primitives", "optimizer", "Python/tape", "total"):
        s, p = results["standard"].get(key, 0.0), results["pa"].get(key, 0.0)
        ratio = f"{p / s:8.2f}" if s > 0 else f"{'':8s}"
        print(f"{key:18s} {1e3 * s:10.1f} {1e3 * p:10.1f} {ratio}")
    ratio = results["pa"]["total"] / results["standard"]["total"]
    print(f"pa / standard step time: {ratio:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
