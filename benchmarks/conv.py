"""F.conv2d forward + backward, PA beside the float baseline, on ResNet-20's conv shapes.

    python benchmarks/conv.py [--rounds 5] [--batch 64]

One thread (numba and BLAS), process CPU time, the best of alternating rounds. Per
row: a 3x3 convolution (padding 1) of a batch of images, forward and backward (dx and
dw), in `standard` (BLAS), `pa-approx` (the `pa` preset's matmul) and `pa-exact`, and
pa/standard ratios; then where the pa-approx time goes (its kernels alone: unfold, the
forward GEMM, the two backward GEMMs, fold). The last line weighs the rows as ResNet-20
does (per stage 6 such convolutions; the stem, the two stride-2 convs and the 1x1
shortcuts left out). The data set-up uses float arithmetic on purpose.
"""
import argparse
import os
import subprocess
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import pafree.functional as F
from pafree import Tensor, config
from pafree.autograd import registry as R

SHAPES = [(16, 32), (32, 16), (64, 8)]      # (channels, image side) of ResNet-20's stages
MODES = ("standard", "pa-approx", "pa-exact")


def cpu_time(fn):
    start = time.process_time()
    fn()
    return time.process_time() - start


def step(x, w, g, mode):
    with config.mode(matmul=mode):
        X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        F.conv2d(X, W, padding=1).backward(g)


def parts(x, w, g):
    """The pa-approx step's kernels, each called as the step calls it."""
    n, c, hw = x.shape[0], x.shape[1], x.shape[2]
    geometry = dict(kernel=(3, 3), stride=(1, 1), padding=(1, 1))
    cols = R.unfold(x, **geometry)
    p, w3, g4 = cols.reshape(n, 1, 9 * c, hw * hw), w.reshape(1, -1, 9 * c), g.reshape(n, 1, -1, hw * hw)
    return {
        "unfold": lambda: R.unfold(x, **geometry),
        "gemm": lambda: R.pam_matmul(w3, p),
        "dP gemm": lambda: R.pam_matmul(w3, g4, transpose_a=True),
        "dw gemm": lambda: R.pam_matmul(g4, p, transpose_b=True),
        "fold": lambda: R.fold(cols, x.shape, **geometry),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    numba.set_num_threads(1)
    model = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in model.splitlines() if "Model name" in line), "?")
    print(f"CPU {model}, numba {numba.__version__}, 1 thread, load {os.getloadavg()[0]:.2f}, "
          f"batch {args.batch}, 3x3 padding 1, forward + backward, best process CPU time of {args.rounds}")
    print(f"{'conv':>16} " + " ".join(f"{m + ' ms':>14}" for m in MODES)
          + f" {'approx/std':>10} {'exact/std':>9}   pa-approx parts ms")
    rng = np.random.default_rng(0)
    totals = dict.fromkeys(MODES, 0.0)
    with threadpool_limits(1, user_api="blas"):
        for c, hw in SHAPES:
            x = rng.standard_normal((args.batch, c, hw, hw)).astype(np.float32)
            w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
            g = rng.standard_normal((args.batch, c, hw, hw)).astype(np.float32)
            best = dict.fromkeys(MODES, float("inf"))
            pieces = parts(x, w, g)
            best_parts = dict.fromkeys(pieces, float("inf"))
            for _ in range(args.rounds):
                for mode in MODES:                       # alternating, side by side
                    best[mode] = min(best[mode], cpu_time(lambda: step(x, w, g, mode)))
                for name, fn in pieces.items():
                    best_parts[name] = min(best_parts[name], cpu_time(fn))
            for mode in MODES:
                totals[mode] += 6 * best[mode]
            split = ", ".join(f"{name} {t * 1e3:.1f}" for name, t in best_parts.items())
            print(f"{f'{c}->{c} {hw}x{hw}':>16} " + " ".join(f"{best[m] * 1e3:14.1f}" for m in MODES)
                  + f" {best['pa-approx'] / best['standard']:10.2f} {best['pa-exact'] / best['standard']:9.2f}"
                  + f"   {split}", flush=True)
    print(f"{'ResNet-20 x6':>16} " + " ".join(f"{totals[m] * 1e3:14.1f}" for m in MODES)
          + f" {totals['pa-approx'] / totals['standard']:10.2f} {totals['pa-exact'] / totals['standard']:9.2f}")
    print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
