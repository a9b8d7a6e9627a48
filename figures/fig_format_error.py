"""PAM's relative error per float format: float32, bfloat16 and float16 (SPEC section 7).

For normal results the relative error (A ⊙ B) / (A · B) - 1 depends on the two
mantissas only, so its distribution is that over every pair of mantissas: all
2^7 x 2^7 pairs of bfloat16, all 2^10 x 2^10 of float16, and for float32 a
random million pairs, each PAM computed in its own format (``pafree.ops`` on
arrays of that dtype). One histogram per format, with the mean and the extreme
-1/9 (at M_A = M_B = 0.5, which every format with a mantissa bit holds).

    python figures/fig_format_error.py      # writes format_error.png/.pdf/.npz here
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import ml_dtypes  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pafree import ops  # noqa: E402
from pafree.figures import save  # noqa: E402

FORMATS = {"float32": (np.float32, 23), "bfloat16": (ml_dtypes.bfloat16, 7),
           "float16": (np.float16, 10)}


def mantissa_pairs(mant_bits, most, rng):
    """Every pair of values 1 + i 2^-mant_bits in [1, 2), or ``most`` random pairs."""
    count = 1 << mant_bits
    if count * count <= most:
        i, j = np.meshgrid(np.arange(count), np.arange(count))
        i, j = i.ravel(), j.ravel()
    else:
        i, j = rng.integers(0, count, (2, most))
    return 1 + i / count, 1 + j / count           # float64, exact


def make(out_dir, most=1 << 20, bins=120):
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    edges = np.linspace(-1 / 9, 0, bins + 1)
    edges[[0, -1]] += (-1e-12, 1e-300)            # -1/9 and the exact products inside, after rounding
    data = {"edges": edges}
    for name, (dtype, mant_bits) in FORMATS.items():
        a, b = mantissa_pairs(mant_bits, most, rng)
        pam = ops.pam(a.astype(dtype), b.astype(dtype)).astype(np.float64)
        error = pam / (a * b) - 1
        counts, _ = np.histogram(error, edges)
        data |= {f"{name}_counts": counts, f"{name}_min": error.min(), f"{name}_max": error.max(),
                 f"{name}_mean": error.mean(), f"{name}_pairs": a.size}
        ax.stairs(counts / a.size, 100 * edges, linewidth=1.4,
                  label=f"{name} ({a.size:,} pairs): mean {100 * error.mean():.2f} %, "
                        f"min {100 * error.min():.2f} %")
    ax.axvline(-100 / 9, color="gray", linestyle=":", linewidth=1)
    ax.set(xlabel="relative error of A ⊙ B (%)", ylabel="fraction of pairs per bin",
           title="PAM's relative error per format (every mantissa pair; float32 sampled)")
    ax.legend(fontsize="small", loc="upper left")
    return save(fig, out_dir, "format_error", data)


if __name__ == "__main__":
    make(Path(__file__).parent)
