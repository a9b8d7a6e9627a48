"""Time one training step of the cifar10 ResNet-20 (batch 64, 3x32x32 images), pa beside standard.

Both modes build the same model (pre-activation ResNet-20, widths 16/32/64 unless given,
same seed and initial weights) through the cifar10 task, reading a temporary directory of
random CIFAR-10 binary files (records of the real format: the images are random pixels of
the real shape), and train on the same augmented batch: forward, loss, backward and the
AdamW update (PA arithmetic throughout in pa mode). The modes alternate step by step after
a pause, so both see the same machine load. Prints the CPU, the median step per mode, the
ratio pa / standard, images/s and the time of one CIFAR-10 epoch (50,000 images), then
where the median step's time goes:

  forward / backward / optimizer   the loss (the model's forward), the backward walk,
                                   clipping and the AdamW update; "rest": the step's glue
  per primitive                    time inside each autograd kernel (outermost calls),
                                   forward and backward together

    python benchmarks/cnn_step.py [--steps 7] [--batch-size 64] [--widths 16 32 64] [--depth 20]
"""
import argparse
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

from pafree import optim
from pafree.autograd import registry
from pafree.autograd.tensor import Tensor
from pafree.run import build
from pafree.tasks import cifar10
from train_step import median_steps   # benchmarks/train_step.py

MODES = ("standard", "pa")
PHASES = ("forward", "backward", "optimizer", "rest", "total")
EPOCH = 50_000
# the float baseline's primitive beside its PA counterpart, on one row
BASELINE = {"fmatmul": "pam_matmul", "fmul": "pam", "fdiv": "pad", "fsqrt": "pasqrt",
            "fexp2": "paexp2", "flog2": "palog2"}


def cpu_model():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class Timers:
    """Seconds per phase of a step and per kernel, by wrapping the step's parts."""

    def __init__(self):
        self.phases, self.kernels = {}, {}
        self.depth = 0
        self.saved = (registry.Kernel.__call__, Tensor.backward, optim.clip_grad_norm)

    def timed(self, fn, phase):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - t0
        return wrapper

    def install(self, runs):
        call, backward, clip = self.saved

        def timed_call(kernel, /, *args, **params):    # (unfold has a kernel= parameter)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return call(kernel, *args, **params)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    dt = time.perf_counter() - t0
                    self.kernels[kernel.name] = self.kernels.get(kernel.name, 0.0) + dt

        registry.Kernel.__call__ = timed_call
        Tensor.backward = self.timed(backward, "backward")
        optim.clip_grad_norm = self.timed(clip, "optimizer")
        for run in runs:
            run.task.loss = self.timed(run.task.loss, "forward")
            run.optimizer.step = self.timed(run.optimizer.step, "optimizer")

    def uninstall(self):
        registry.Kernel.__call__, Tensor.backward, optim.clip_grad_norm = self.saved

    def step(self, run, batch):
        self.phases, self.kernels = {}, {}
        t0 = time.perf_counter()
        run.train_step(batch)
        row = dict(self.phases, total=time.perf_counter() - t0)
        row["rest"] = row["total"] - sum(v for k, v in row.items() if k != "total")
        return dict(row, kernels=self.kernels)


def measure(steps, batch_size, depth, widths):
    """The median step of each mode, and the model."""
    with tempfile.TemporaryDirectory() as data_dir:
        cifar10.write_random_files(data_dir, 2 * batch_size)     # train: 9/10 of them
        runs = {mode: build("cifar10", mode, seed=0, data_dir=data_dir, batch_size=batch_size,
                            depth=depth, widths=widths) for mode in MODES}
    return median_steps(runs, steps, Timers()), runs["standard"].model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--widths", type=int, nargs=3, default=[16, 32, 64])
    parser.add_argument("--top", type=int, default=12, help="primitives listed")
    args = parser.parse_args()
    median, model = measure(args.steps, args.batch_size, args.depth, args.widths)
    print(f"CPU: {cpu_model()}; NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}"
          f", load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"cifar10 pre-activation ResNet-{args.depth}, widths {'/'.join(map(str, args.widths))}"
          f", {model.num_parameters():,} parameters, batch {args.batch_size} of 3x32x32; "
          f"median of {args.steps} steps per mode")
    std, pa = median["standard"], median["pa"]
    std_kernels, pa_kernels = std["kernels"], pa["kernels"]
    print(f"{'ms per step':22s} {'standard':>10s} {'pa':>10s} {'pa/std':>8s}")
    for key in PHASES:
        s, p = std.get(key, 0.0), pa.get(key, 0.0)
        print(f"{key:22s} {1e3 * s:10.1f} {1e3 * p:10.1f} {p / s if s > 0 else 0:8.2f}")
    std_kernels = {BASELINE.get(k, k): v for k, v in std_kernels.items()}
    names = sorted(set(std_kernels) | set(pa_kernels),
                   key=lambda k: -max(std_kernels.get(k, 0), pa_kernels.get(k, 0)))
    print("per primitive, ms in the median step (standard: the float counterpart, "
          "fmatmul for pam_matmul, fmul for pam, ...):")
    for name in names[:args.top]:
        s, p = std_kernels.get(name, 0.0), pa_kernels.get(name, 0.0)
        print(f"  {name:20s} {1e3 * s:10.1f} {1e3 * p:10.1f} {p / s if s > 0 else 0:8.2f}")
    for mode, row in (("standard", std), ("pa", pa)):
        rate = args.batch_size / row["total"]
        print(f"{mode:9s} {rate:8.1f} images/s, one CIFAR-10 epoch ({EPOCH:,} images) "
              f"{EPOCH / rate / 60:6.1f} min")
    ratio = pa["total"] / std["total"]
    print(f"pa / standard step time: {ratio:.2f}x (target <= 2.5x: "
          f"{'met' if ratio <= 2.5 else 'MISSED'})")


if __name__ == "__main__":
    main()
