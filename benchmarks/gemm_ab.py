"""The PAM GEMMs of this tree against those of a git revision, alternately in one process.

    python benchmarks/gemm_ab.py REV [--sizes 1024 2048] [--rounds 7]

Copies the revision's ``pafree/ops`` into a temporary package (``git archive``)
and imports it beside this tree's ``pafree.ops``; then, per size (n^3), data
kind and thread count, times the forward ``pam_matmul`` and both derivatives
``pam_matmul_exact_grads`` of each side in alternating rounds (old, new, new,
old, ...) and keeps each side's best: on a shared machine whose speed drifts,
both sides see the same quiet moments. Prints the best wall times, new/old,
for one thread also the ratio of best process CPU times, and checks that
both sides give the same bits.

Data as in benchmarks/gemm.py: "well" is standard normal (the fast loops),
"general" a ReLU'd A and dY with 10% tiny entries (the masked loops). The
data set-up uses ordinary float arithmetic on purpose.
"""
import argparse
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from gemm import best_time, make   # benchmarks/gemm.py
from pafree import ops

REPO = Path(__file__).resolve().parent.parent


def import_ops_at(rev):
    """The revision's pafree/ops as the package ``ops_at_<rev>`` (its imports are relative),
    extracted once under the temporary directory (so its kernels' disk cache is kept)."""
    name = "ops_at_" + "".join(c if c.isalnum() else "_" for c in rev)
    home = Path(tempfile.gettempdir()) / f"pafree_{name}"
    if not (home / name).is_dir():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "pafree/ops"],
                                 check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(home, filter="data")
        (home / "pafree" / "ops").rename(home / name)
    sys.path.insert(0, str(home))
    return importlib.import_module(name)


def same_bits(x, y):
    x, y = np.asarray(x), np.asarray(y)
    return x.shape == y.shape and np.array_equal(np.isnan(x), np.isnan(y)) and \
        np.array_equal(np.where(np.isnan(x), 0, x).view(np.int32),
                       np.where(np.isnan(y), 0, y).view(np.int32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="git revision to compare with, e.g. ee6dd6a")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1, help="timed calls per side and round")
    args = parser.parse_args()
    old = import_ops_at(args.rev)
    print(f"new: {ops.__file__}\nold: {old.__file__} ({args.rev})")
    print(f"numba {numba.__version__}, threads up to {numba.config.NUMBA_NUM_THREADS}")
    rng = np.random.default_rng(0)
    print(f"{'size':>6} {'data':>8} {'thr':>3} {'op':>6} {'old ms':>9} {'new ms':>9} "
          f"{'new/old':>7} {'cpu new/old':>11}")
    for size in args.sizes:
        for kind in ("well", "general"):
            a = make((size, size), kind, rng)
            b = make((size, size), "well", rng)
            dy = make((size, size), kind, rng)
            for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
                numba.set_num_threads(threads)
                for op, call in (("fwd", lambda m: m.pam_matmul(a, b)),
                                 ("grads", lambda m: m.pam_matmul_exact_grads(a, b, dy))):
                    got_old, got_new = call(old), call(ops)     # (and compile)
                    if op == "fwd":
                        got_old, got_new = [got_old], [got_new]
                    same = all(map(same_bits, got_old, got_new))
                    t_old = t_new = (float("inf"), float("inf"))
                    for round_ in range(args.rounds):
                        # which side goes first alternates too (the first of a pair was
                        # seen to run a few percent apart on its own)
                        for side in ((old, ops) if round_ % 2 == 0 else (ops, old)):
                            t = best_time(lambda: call(side), args.calls)
                            if side is old:
                                t_old = tuple(map(min, t_old, t))
                            else:
                                t_new = tuple(map(min, t_new, t))
                    # process CPU time: insensitive to time slicing, but with one thread only
                    cpu = f"{t_new[1] / t_old[1]:11.3f}" if threads == 1 else " " * 11
                    print(f"{size:>6} {kind:>8} {threads:>3} {op:>6} {t_old[0] * 1e3:9.1f} "
                          f"{t_new[0] * 1e3:9.1f} {t_new[0] / t_old[0]:7.3f} {cpu}"
                          + ("" if same else "  BITS DIFFER"), flush=True)


if __name__ == "__main__":
    main()
