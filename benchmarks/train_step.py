"""Time one training step of a task's model (default: numbers; default sizes), pa beside standard.

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

    python benchmarks/train_step.py [--task numbers] [--steps 21] [--batch-size N]
"""
import argparse
import os
import time

from pafree import optim
from pafree.autograd import registry
from pafree.bench import alternate_steps
from pafree.run import build
from pafree.tasks import TASKS

MODES = ("standard", "pa")
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


def measure(task, steps, batch_size):
    """The median step (by total time) of each mode, and the runs."""
    overrides = {} if batch_size is None else {"batch_size": batch_size}
    runs = {mode: build(task, mode, seed=0, **overrides) for mode in MODES}
    return median_steps(runs, steps, Timers()), runs


def median_steps(runs, steps, timers):
    """mode -> the median (by total time) of ``steps`` timed steps of each run of ``runs``
    (mode -> Run) on the standard run's first batch, after three warm-up steps each, the
    runs taking turns; ``timers`` (this module's Timers or the like) times each step."""
    batch = runs["standard"].batch(0)
    for run in runs.values():
        for _ in range(3):                               # compile and warm up
            run.train_step(batch)
    timers.install(runs.values())
    try:
        rows = dict(zip(runs, alternate_steps(list(runs.values()), batch, steps, timers.step)))
    finally:
        timers.uninstall()
    return {mode: sorted(r, key=lambda row: row["total"])[len(r) // 2] for mode, r in rows.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=21)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the task's")
    parser.add_argument("--task", default="numbers", choices=sorted(TASKS))
    args = parser.parse_args()
    median, runs = measure(args.task, args.steps, args.batch_size)
    run = runs["standard"]
    print(f"{args.task}: {run.model.num_parameters():,} parameters, batch "
          f"{run.hparams['batch_size']}; median of {args.steps} steps per mode")
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
