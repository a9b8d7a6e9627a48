"""Figure 2 of Kosson & Jaggi: PAM against the product on [1, 2]².

Three heat maps with contours: x1 ⊙ x2 (pam), x1·x2, and the relative error
(x1 ⊙ x2 - x1·x2) / (x1·x2) in percent. The error is zero on the edges
(either operand a power of two) and reaches its minimum -1/9 = -11.1 % at
(1.5, 1.5), where PAM gives 2 for 2.25. The grid has 2^k + 1 points a side so
that 1.5 lies on it.

    python figures/fig_pam_error.py      # writes pam_error.png/.pdf/.npz here
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pafree import ops  # noqa: E402
from pafree.figures import save  # noqa: E402


def make(out_dir, n=513):
    axis = np.linspace(1, 2, n, dtype=np.float32)
    x1, x2 = np.meshgrid(axis, axis)  # x1 varies along columns, x2 along rows
    pam = ops.pam(x1, x2)
    product = x1.astype(np.float64) * x2
    rel_error = 100 * (pam / product - 1)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    extent = (1, 2, 1, 2)
    levels = np.arange(1.25, 4, 0.25)
    for ax, values, title in ((axes[0], pam, "x1 ⊙ x2 (PAM)"), (axes[1], product, "x1 · x2")):
        image = ax.imshow(values, origin="lower", extent=extent, vmin=1, vmax=4, cmap="viridis")
        lines = ax.contour(x1, x2, values, levels=levels, colors="white", linewidths=0.8)
        # label the contours where they cross x1 = x2, well inside the square
        spots = np.interp(levels[1::2], np.diagonal(values), axis)
        ax.clabel(lines, levels[1::2], fontsize="small", fmt="%g", manual=list(zip(spots, spots)))
        ax.set_title(title)
    fig.colorbar(image, ax=axes[:2], label="value", shrink=0.9)

    image = axes[2].imshow(rel_error, origin="lower", extent=extent, cmap="magma",
                           vmin=-100 / 9, vmax=0)
    error_levels = np.arange(-10, 0, 2)
    ink = ["white" if level < -5 else "black" for level in error_levels]  # dark map, light rim
    lines = axes[2].contour(x1, x2, rel_error, levels=error_levels, colors=ink,
                            linewidths=0.8, linestyles="solid")
    # label where the contours cross x2 = 1.5 left of the minimum (the error falls along it)
    mid = n // 2
    spots = np.interp(error_levels, rel_error[mid, : mid + 1][::-1], axis[: mid + 1][::-1])
    axes[2].clabel(lines, fontsize="small", fmt="%g %%", manual=[(s, 1.5) for s in spots])
    low = np.unravel_index(np.argmin(rel_error), rel_error.shape)
    axes[2].plot(x1[low], x2[low], "c+", ms=12, mew=2)
    axes[2].set_title(f"relative error of PAM (%)\nminimum {rel_error[low]:.1f} % "
                      f"at ({x1[low]:g}, {x2[low]:g})")
    fig.colorbar(image, ax=axes[2], label="relative error (%)", shrink=0.9)
    for ax in axes:
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_aspect("equal")
    data = {"x1": x1, "x2": x2, "pam": pam, "product": product, "rel_error_percent": rel_error}
    return save(fig, out_dir, "pam_error", data)


if __name__ == "__main__":
    make(Path(__file__).parent)
