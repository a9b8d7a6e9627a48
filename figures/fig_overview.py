"""Figure 1 of Kosson & Jaggi: four functions and their piecewise affine versions.

On x in [0, 8]: 1.5·x against 1.5 ⊙ x (pam), 1/x against 1 ⊘ x (pad), exp2
against paexp2 and log2 against palog2. True curves solid, PA curves dashed in
the same colour. The PA curves are straight between powers of two (between
integers for paexp2) and touch the true ones there.

    python figures/fig_overview.py      # writes overview.png/.pdf/.npz here
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pafree import ops  # noqa: E402
from pafree.figures import save  # noqa: E402


def curves(n):
    """x (float32, 0 left out: 1/x and log2 are infinite there) and each (true, PA) pair."""
    x = np.linspace(0, 8, n, dtype=np.float32)[1:]
    x64 = x.astype(np.float64)
    return x, {
        "scale": (1.5 * x64, ops.pam(1.5, x)),
        "reciprocal": (1 / x64, ops.pad(1.0, x)),
        "exp2": (np.exp2(x64), ops.paexp2(x)),
        "log2": (np.log2(x64), ops.palog2(x)),
    }


LABELS = {  # key: (true label, PA label)
    "scale": ("1.5·x", "1.5 ⊙ x"),
    "reciprocal": ("1/x", "1 ⊘ x"),
    "exp2": ("exp2(x)", "paexp2(x)"),
    "log2": ("log2(x)", "palog2(x)"),
}


def make(out_dir, n=1601):
    x, pairs = curves(n)
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    for i, (key, (true, pa)) in enumerate(pairs.items()):
        true_label, pa_label = LABELS[key]
        ax.plot(x, true, "-", color=f"C{i}", label=true_label)
        ax.plot(x, pa, "--", color=f"C{i}", label=pa_label)
    ax.set_xlim(0, 8)
    ax.set_ylim(-3, 8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Standard functions (solid) and their piecewise affine versions (dashed)",
                 fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, loc="lower right")
    data = {"x": x}
    for key, (true, pa) in pairs.items():
        data[f"{key}_true"] = true
        data[f"{key}_pa"] = pa
    return save(fig, out_dir, "overview", data)


if __name__ == "__main__":
    make(Path(__file__).parent)
