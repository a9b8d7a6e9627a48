"""Time one training step of the numbers encoder-decoder (default size), pa beside standard.

Both modes build the same model (same seed, same initial weights) and train on
the same batch; each step is forward, loss, backward, gradient clipping and the
AdamW update (PA arithmetic throughout in pa mode). The two modes alternate step
by step, so both see the same machine load. Prints the median step per mode,
the ratio pa / standard and the breakdown of the median step (each step starts
after a pause, so that neither library's idle spinning threads slow the other):

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
from pafree.run import build

MODES = ("standard", "pa")
# OpenBLAS worker threads spin for a while after a float matmul and would take the cores
# from the next step's Numba threads (and the other way round): steps start after a pause
PAUSE_S = 0.3
GEMM = {"pam_matmul", "fmatmul"}
CATEGORIES = ("GEMM", "other primitives", "optimizer", "Python/tape", "total")


class Timers:
    """Seconds per category, by wrapping the registry's kernel dispatch and the optimizer."""

    def __init__(self):
        self.seconds = {}
        self.inside_optimizer = False
        self.saved = registry.Kernel.__call__, optim.clip_grad_norm

    def add(self, key, dt):
        self.seconds[key] = self.seconds.get(key, 0.0) + dt

    def install(self, runs):
        call, clip = self.saved

        def timed_call(prim, *args, **params):
            t0 = time.perf_counter()
            try:
                return call(prim, *args, **params)
            finally:
                if not self.inside_optimizer:
                    self.add("GEMM" if prim.name in GEMM else "other primitives",
                             time.perf_counter() - t0)

        def optimizer_part(fn):
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                self.inside_optimizer = True
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.inside_optimizer = False
                    self.add("optimizer", time.perf_counter() - t0)
            return wrapper

        registry.Kernel.__call__ = timed_call
        optim.clip_grad_norm = optimizer_part(clip)
        for run in runs:
            run.optimizer.step = optimizer_part(run.optimizer.step)

    def uninstall(self):
        registry.Kernel.__call__, optim.clip_grad_norm = self.saved

    def step(self, run, batch):
        self.seconds = {}
        t0 = time.perf_counter()
        run.train_step(batch)
        row = dict(self.seconds, total=time.perf_counter() - t0)
        row["Python/tape"] = row["total"] - sum(v for k, v in row.items() if k != "total")
        return row


def alternate(runs, batch, timers, steps):
    """Warm up, then ``steps`` timed steps per mode, the modes alternating after a pause;
    the median step (by total time) of each mode."""
    for run in runs.values():
        for _ in range(3):                               # compile and warm up
            run.train_step(batch)
    timers.install(runs.values())
    rows = {mode: [] for mode in runs}
    try:
        for _ in range(steps):
            for mode, run in runs.items():
                time.sleep(PAUSE_S)
                rows[mode].append(timers.step(run, batch))
    finally:
        timers.uninstall()
    return {mode: sorted(r, key=lambda row: row["total"])[len(r) // 2]
            for mode, r in rows.items()}


def measure(steps, batch_size):
    """The median step of each mode, and the runs."""
    runs = {mode: build("numbers", mode, seed=0, batch_size=batch_size) for mode in MODES}
    return alternate(runs, runs["standard"].batch(0), Timers(), steps), runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=21)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    median, runs = measure(args.steps, args.batch_size)
    run = runs["standard"]
    hp = run.hparams
    print(f"numbers encoder-decoder: d_model {hp['d_model']}, {hp['n_enc_layers']}+"
          f"{hp['n_dec_layers']} layers, d_ff {hp['d_ff']}, batch {args.batch_size}, "
          f"{run.model.num_parameters():,} parameters; median of {args.steps} steps per mode")
    print(f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'ms per step':18s} {'standard':>10s} {'pa':>10s} {'pa/std':>8s}")
    for key in CATEGORIES:
        s, p = median["standard"].get(key, 0.0), median["pa"].get(key, 0.0)
        ratio = f"{p / s:8.2f}" if s > 0 else ""
        print(f"{key:18s} {1e3 * s:10.1f} {1e3 * p:10.1f} {ratio}")
    ratio = median["pa"]["total"] / median["standard"]["total"]
    print(f"pa / standard step time: {ratio:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
