"""The multiplication-free warm-up + cosine schedule against the true one, and its error.

PA: integer progress (long division), cosine from a 65-knot table by PA interpolation,
one PAM by the learning-rate span (pafree.optim.PASchedule). True: float64 formula.
Writes schedule.png, schedule.pdf and schedule.npz (the numbers behind the plot).
"""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pafree import optim  # noqa: E402
from pafree.figures import save  # noqa: E402

LR, MIN_LR, TOTAL, WARMUP = 1e-3, 1e-5, 3000, 200


def true_lr(t):
    if t < WARMUP:
        return LR * (t + 1) / WARMUP
    p = min(1.0, (t - WARMUP) / (TOTAL - WARMUP))
    return MIN_LR + (LR - MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * p))


def make(out_dir):
    steps = np.arange(TOTAL + 100)
    pa_sched = optim.make_schedule("cosine", LR, TOTAL, WARMUP, MIN_LR, mode="pa")
    pa = np.array([pa_sched(int(t)) for t in steps], np.float64)
    true = np.array([true_lr(int(t)) for t in steps])
    # the cosine factor alone, over the progress p, without the final PAM by the lr span
    q = np.linspace(0, 2 ** 24, 4097).astype(np.int64)
    factor_pa = np.array([optim.pa_cosine(int(x)) for x in q], np.float64)
    factor_true = 0.5 * (1.0 + np.cos(np.pi * q / 2 ** 24))

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot(steps, true * 1e3, color="black", lw=2.5, alpha=0.35, label="true (float64)")
    ax.plot(steps, pa * 1e3, color="C3", lw=1, label="piecewise affine")
    ax.set(xlabel="step", ylabel="learning rate (×1e-3)",
           title=f"warm-up {WARMUP} + cosine to {TOTAL}, lr {LR:g}")
    ax.legend()
    ax = axes[1]
    ax.plot(steps, (pa - true) / LR * 100, color="C3", lw=1)
    ax.axhline(0, color="black", lw=0.5)
    ax.set(xlabel="step", ylabel="(PA - true) / peak lr  [%]",
           title="schedule error (mostly the PAM by the lr)")
    ax = axes[2]
    ax.plot(q / 2 ** 24, factor_pa - factor_true, color="C0", lw=1)
    ax.axhline(0, color="black", lw=0.5)
    ax.set(xlabel="progress p", ylabel="PA factor - (1 + cos πp)/2",
           title="cosine factor error (64 PA segments)")
    fig.tight_layout()
    paths = save(fig, out_dir, "schedule", dict(
        steps=steps, lr_pa=pa, lr_true=true, progress=q / 2 ** 24, factor_pa=factor_pa,
        factor_true=factor_true, lr=LR, min_lr=MIN_LR, total=TOTAL, warmup=WARMUP))
    print(f"schedule: max |PA - true| = {np.max(np.abs(pa - true)) / LR:.2%} of the peak lr; "
          f"cosine factor error in [{np.min(factor_pa - factor_true):.5f}, "
          f"{np.max(factor_pa - factor_true):.5f}]")
    return paths


if __name__ == "__main__":
    make(Path(__file__).parent)
