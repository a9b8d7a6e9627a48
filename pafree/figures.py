"""``pafree figures``: regenerate the paper's figures and pafree's own.

Every ``figures/fig_<name>.py`` of the source checkout defines
``make(out_dir) -> list of written paths`` and writes ``<name>.png``,
``<name>.pdf`` and ``<name>.npz`` (the numbers behind the picture). This
module finds that folder next to the package (an editable install), runs each
script, and holds the two helpers the scripts share: ``save`` and
``derivative_grid``. Figures are plotting code outside any training step, so
the reference curves use ordinary float math; the PA curves come from
``pafree.ops``.
"""
import importlib.util
import sys
from pathlib import Path

import numpy as np

FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"


def add_arguments(parser):
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: the checkout's figures/ folder, "
                             "whose PNGs the README shows)")


def figure_scripts(folder):
    """The fig_*.py scripts of ``folder``, sorted; an error if there are none."""
    scripts = sorted(folder.glob("fig_*.py"))
    if not scripts:
        raise FileNotFoundError(
            f"no figures/fig_*.py next to the pafree package (looked in {folder}). "
            "The figure scripts live in the source checkout: run `pafree figures` from a "
            "checkout installed in editable mode (pip install -e .).")
    return scripts


def load_script(path):
    """Import a figure script from its file (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args):
    import matplotlib
    from tqdm import tqdm

    matplotlib.use("Agg")  # headless, whatever the scripts do
    try:
        scripts = figure_scripts(FIGURES_DIR)
    except FileNotFoundError as err:
        print(f"pafree figures: {err}", file=sys.stderr)
        return 1
    out_dir = args.out if args.out is not None else FIGURES_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bar = tqdm(scripts, unit="figure")
    for path in bar:
        bar.set_description(path.stem)
        written += load_script(path).make(out_dir)
    print(f"pafree figures: wrote {len(written)} files ({len(scripts)} figures) to {out_dir}")
    return 0


def save(fig, out_dir, name, data):
    """Write ``name``.png/.pdf and the arrays ``data`` as ``name``.npz; close ``fig``."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf", out_dir / f"{name}.npz"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    np.savez_compressed(paths[2], **data)
    return paths


def save_derivative_grid(rows, title, out_dir, name):
    """Draw ``rows`` in the appendix layout and save the figure with every row's arrays."""
    data = {f"{row['key']}_{field}": row[field] for row in rows
            for field in ("x", "true", "pa", "dtrue", "exact", "approx")}
    return save(derivative_grid(rows, title), out_dir, name, data)


def derivative_grid(rows, title):
    """The appendix layout: one row per function, four columns.

    ``rows``: dicts with ``label`` (the function, e.g. "1.5·x"), ``pa_label``,
    ``x``, ``true``, ``pa``, ``dtrue``, ``exact``, ``approx`` (float arrays) and
    ``error`` ("relative" or "absolute": the log rows vanish at x = 1, where a
    relative error means nothing). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(15, 2.7 * len(rows)), squeeze=False,
                             layout="constrained")
    fig.suptitle(title)
    for row, (ax_f, ax_e, ax_d, ax_de) in zip(rows, axes):
        x = row["x"]
        ax_f.plot(x, row["true"], "k-", label=row["label"])
        ax_f.plot(x, row["pa"], "C3--", label=row["pa_label"])
        ax_f.set_ylabel(row["label"])
        ax_f.legend(fontsize="small")

        if row["error"] == "relative":
            ax_e.plot(x, 100 * (row["pa"] / row["true"] - 1), "C3-")
            ax_e.set_ylabel("relative error (%)")
        else:
            ax_e.plot(x, row["pa"] - row["true"], "C3-")
            ax_e.set_ylabel("absolute error")

        ax_d.plot(x, row["dtrue"], "k-", label="standard")
        ax_d.plot(x, row["exact"], "C1-", label="PA exact")
        ax_d.plot(x, row["approx"], "C0--", label="PA approx")
        ax_d.set_ylabel("derivative")
        ax_d.legend(fontsize="small")

        ax_de.plot(x, 100 * (row["exact"] / row["dtrue"] - 1), "C1-", label="PA exact")
        ax_de.plot(x, 100 * (row["approx"] / row["dtrue"] - 1), "C0--", label="PA approx")
        ax_de.axhline(0, color="0.6", lw=0.8)
        ax_de.set_ylabel("rel. derivative error (%)")
        ax_de.legend(fontsize="small")
        for ax in (ax_f, ax_e, ax_d, ax_de):
            ax.grid(alpha=0.3)
            ax.set_xlim(np.min(x), np.max(x))
    for ax, name in zip(axes[0], ("function", "error of the PA value", "derivative",
                                  "error of the derivative")):
        ax.set_title(name)
    for ax in axes[-1]:
        ax.set_xlabel("x")
    return fig
