"""``pafree ablation``: the paper's component ablation (its Table 3) on one task.

The grid (``grid()``): the float baseline; each component (matmul, norm, softmax, loss,
other) piecewise affine alone, with exact and with approx derivatives; the optimizer PA
alone; then the components combined one by one in the paper's order (matmul, norm, softmax,
loss, other, optimizer), each with the paper's kind (approx everywhere except exact for the
loss; the last row is the ``pa`` preset); everything PA with the loss's approx derivative
instead (on dates the single-component rows rank the loss's kinds the other way round); and
the output offset alpha of the paper's section 2.7 on the PA matmuls, alone and on top of
everything. Settings with the same configuration
are run once (the first combined row is "matmul approx").

Each (setting, seed) is one ``pafree train`` subprocess with its own run directory under
OUT/runs; ``--jobs`` of them run at once, each on one thread. Resumable: a run whose log
holds its final row, or that stopped on a non-finite loss (``unstable``, recorded in its
directory), is never repeated; one with a checkpoint continues with ``--resume``; any other
starts over. Results (OUT/ablation.jsonl, OUT/ablation.md, OUT/ablation.png) are rebuilt
from the run directories after every run, so they show whatever has finished.
"""
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

from ..tasks import TASKS, task_class
from .loop import METRICS
from .run import CHECKPOINT

COMPONENTS = ("matmul", "norm", "softmax", "loss", "other")
PAPER_KIND = {"matmul": "approx", "norm": "approx", "softmax": "approx", "loss": "exact",
              "other": "approx"}
ALPHA = 1.0566      # zeroes PAM's mean relative error on uniform mantissas (figures/fig_dot_product.py)
UNSTABLE = "unstable.json"      # written in a run directory whose loss went NaN/inf
RESULTS = "ablation"            # OUT/ablation.jsonl, .md, .png
ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def grid():
    """[(name, group, overrides)]: overrides are pafree train's component modes, optimizer
    and pam_offset on top of mode standard."""
    rows = [("baseline", "baseline", {})]
    for c in COMPONENTS:
        for kind in ("exact", "approx"):
            rows.append((f"{c} {kind}", "alone", {c: "pa-" + kind}))
    rows.append(("optimizer", "alone", {"optim": "pa"}))
    combined = {}
    for c in (*COMPONENTS, "optim"):
        combined = combined | ({"optim": "pa"} if c == "optim" else {c: "pa-" + PAPER_KIND[c]})
        name = "+ optimizer" if c == "optim" else f"+ {c} {PAPER_KIND[c]}"
        rows.append((name, "combined", dict(combined)))
    # the kinds picked from this task's own single-component rows, where they differ from the paper's
    rows.append(("everything, loss approx", "picked", combined | {"loss": "pa-approx"}))
    rows.append((f"matmul approx, alpha {ALPHA}", "offset", {"matmul": "pa-approx", "pam_offset": ALPHA}))
    rows.append((f"everything, alpha {ALPHA}", "offset", combined | {"pam_offset": ALPHA}))
    return rows


def slug(overrides):
    """The run directory name of a configuration: one word per non-standard component."""
    if not overrides:
        return "baseline"
    short = {"pa-exact": "exact", "pa-approx": "approx", "pa": "pa"}
    return "-".join(f"{k}_{short.get(v, v)}" for k, v in sorted(overrides.items()))


def train_command(task, overrides, seed, out, steps=None, resume=False):
    """The ``pafree train`` argument list of one run."""
    if resume:
        return [sys.executable, "-m", "pafree", "train", "--out", out, "--resume"]
    cmd = [sys.executable, "-m", "pafree", "train", "--task", task, "--mode", "standard",
           "--seed", str(seed), "--out", out]
    for key, value in sorted(overrides.items()):
        flag = {"optim": "--optimizer", "pam_offset": "--pam-offset"}.get(key, "--" + key)
        cmd += [flag, str(value)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    return cmd


def final_row(run_dir):
    """The final row of a finished run's log, else None."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return next((r for r in reversed(rows) if "train_seconds" in r), None)


def state(run_dir):
    """'finished', 'unstable', 'resume' (a checkpoint to continue) or 'new'."""
    if final_row(run_dir) is not None:
        return "finished"
    if os.path.exists(os.path.join(run_dir, UNSTABLE)):
        return "unstable"
    if os.path.exists(os.path.join(run_dir, CHECKPOINT)):
        return "resume"
    return "new"


def launch(cmd, log_path):
    """Run ``cmd`` on one thread, its output in ``log_path``; (exit status, CPU seconds)."""
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **ONE_THREAD})
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


NON_FINITE = re.compile(r"loss is (nan|inf|-inf) at step (\d+)")


def run_one(task, overrides, seed, run_dir, steps, launcher=launch):
    """Train (or resume) one run; returns its state afterwards."""
    resume = state(run_dir) == "resume"
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "train.log")
    status, cpu = launcher(train_command(task, overrides, seed, run_dir, steps, resume), log_path)
    with open(os.path.join(run_dir, "cpu_seconds.txt"), "a") as f:
        f.write(f"{cpu:.1f}\n")         # one line per launch: a resumed run adds its parts
    if status == 1:
        with open(log_path) as f:
            found = NON_FINITE.findall(f.read())
        if found:
            with open(os.path.join(run_dir, UNSTABLE), "w") as f:
                json.dump({"loss": found[-1][0], "step": int(found[-1][1])}, f)
    after = state(run_dir)
    if after not in ("finished", "unstable"):
        raise RuntimeError(f"{run_dir}: pafree train exited with status {status}; see {log_path}")
    return after


def collect(out, seeds, rows):
    """One result dict per (setting, seed) that has finished or is unstable, in grid order."""
    results = []
    for name, group, overrides in rows:
        for seed in seeds:
            run_dir = os.path.join(out, "runs", f"{slug(overrides)}-seed{seed}")
            st = state(run_dir)
            if st not in ("finished", "unstable"):
                continue
            row = {"setting": name, "group": group, "seed": seed, "status": "ok" if st == "finished" else st,
                   "overrides": overrides, "run_dir": run_dir}
            if st == "finished":
                final = final_row(run_dir)
                row.update({k: v for k, v in final.items() if k.startswith("test_") or k in ("steps", "train_seconds")})
            else:
                with open(os.path.join(run_dir, UNSTABLE)) as f:
                    row["unstable"] = json.load(f)
            cpu_path = os.path.join(run_dir, "cpu_seconds.txt")
            if os.path.exists(cpu_path):
                with open(cpu_path) as f:
                    row["cpu_seconds"] = round(sum(float(x) for x in f.read().split()), 1)
            results.append(row)
    return results


def summary(results, metric):
    """{setting: (mean, min, max, n finished, n unstable)} of ``test_<metric>``, in grid order."""
    out = {}
    for r in results:
        out.setdefault(r["setting"], {"values": [], "unstable": 0})
        if r["status"] == "ok":
            out[r["setting"]]["values"].append(r["test_" + metric])
        else:
            out[r["setting"]]["unstable"] += 1
    table = {}
    for name, s in out.items():
        v = s["values"]
        mean = sum(v) / len(v) if v else None
        table[name] = (mean, min(v, default=None), max(v, default=None), len(v), s["unstable"])
    return table


def _cell(stats, scale):
    mean, low, high, n, unstable = stats
    text = "" if n == 0 else f"{mean * scale:.1f} ({low * scale:.1f}–{high * scale:.1f})"
    if unstable:
        text += f"{'; ' if text else ''}**unstable: {unstable} of {n + unstable} runs**"
    return text


def table(results, metrics):
    """The markdown table: one row per setting, mean (min–max) over seeds of each metric."""
    scale = {m: 100 if m in ("exact_match", "accuracy") else 1 for m in metrics}
    stats = {m: summary(results, m) for m in metrics}
    header = "| setting | " + " | ".join(f"test {m.replace('_', ' ')}" for m in metrics) + " | seeds | CPU s/run |"
    lines = [header, "|" + "---|" * (len(metrics) + 3)]
    for name in stats[metrics[0]]:
        runs = [r for r in results if r["setting"] == name]
        cpu = [r["cpu_seconds"] for r in runs if "cpu_seconds" in r]
        cells = [_cell(stats[m][name], scale[m]) for m in metrics]
        cells += [str(len(runs)), f"{sum(cpu) / len(cpu):.0f}" if cpu else ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(results, metric, path, title):
    """One bar per setting: its mean's difference from the float baseline's mean (the
    differences are a few points where the values are near 90 %, invisible as bars from 0),
    the seed spread as min–max whiskers, each seed a dot; settings with unstable runs say so
    above their bar. Without a baseline, the means themselves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = summary(results, metric)
    names = list(stats)
    scale = 100 if metric in ("exact_match", "accuracy") else 1
    base = stats.get("baseline")
    ref = base[0] * scale if base and base[3] else 0.0
    means = [(s[0] or 0) * scale - ref if s[3] else 0 for s in stats.values()]
    low = [m + ref - s[1] * scale if s[3] else 0 for m, s in zip(means, stats.values())]
    high = [s[2] * scale - ref - m if s[3] else 0 for m, s in zip(means, stats.values())]
    colors = {"baseline": "0.5", "alone": "tab:blue", "combined": "tab:orange", "picked": "tab:purple",
              "offset": "tab:green"}
    group = {r["setting"]: r["group"] for r in results}
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) + 2), 4.5))
    ax.bar(range(len(names)), means, yerr=[low, high], capsize=3, ecolor="0.5",
           color=[colors[group[n]] for n in names])
    for r in results:
        if r["status"] == "ok":
            ax.plot(names.index(r["setting"]), r["test_" + metric] * scale - ref, "o",
                    color="k", markersize=2.5)
    for i, s in enumerate(stats.values()):
        if s[4]:
            ax.text(i, means[i] + high[i], f"{s[4]} unstable", rotation=90, ha="center",
                    va="bottom", color="tab:red", fontsize=8)
    ax.axhline(0, color="k", linewidth=0.8)
    unit = " (points)" if scale == 100 else ""
    what = f"test {metric.replace('_', ' ')}"
    ax.set_ylabel(f"{what}{unit},\nfrom the float baseline's {ref:.1f}" if ref else what + unit)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(out, task, seeds, rows):
    """OUT/ablation.jsonl, .md and .png from the run directories; returns the results."""
    results = collect(out, seeds, rows)
    base = os.path.join(out, RESULTS)
    with open(base + ".jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    if not results:
        return results
    metric = task_class(task).metric.name
    others = sorted({k[5:] for r in results for k in r if k.startswith("test_")} - {metric})
    with open(base + ".md", "w") as f:
        f.write(table(results, [metric, *others]))
    figure(results, metric, base + ".png", f"{task}: the component ablation, seeds {', '.join(map(str, seeds))}")
    return results


def run_grid(task, seeds, out, jobs=1, steps=None, only=None, progress=True, launcher=launch):
    """Run every (setting, seed) not yet finished, ``jobs`` at a time; write the results."""
    rows = [r for r in grid() if only is None or r[0] in only]
    unique = {}
    for _, _, overrides in rows:
        for seed in seeds:
            unique.setdefault(os.path.join(out, "runs", f"{slug(overrides)}-seed{seed}"), (overrides, seed))
    todo = {d: v for d, v in unique.items() if state(d) in ("new", "resume")}
    from tqdm import tqdm
    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), unit="run", disable=not progress,
               desc=f"ablation {task}", file=sys.stderr)
    failed = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_one, task, o, s, d, steps, launcher): d for d, (o, s) in todo.items()}
        for future in as_completed(futures):
            try:
                future.result()
            except RuntimeError as err:
                failed.append(str(err))
            bar.update(1)
            write_results(out, task, seeds, rows)
    bar.close()
    return write_results(out, task, seeds, rows), failed


def add_arguments(parser):
    parser.add_argument("--task", default="dates", choices=sorted(TASKS),
                        help="the task (default dates, whose float baseline stays below the ceiling)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", help="directory for the runs and results (default runs/ablation-TASK)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(),
                        help="runs at once, one thread each (default: the number of cores)")
    parser.add_argument("--steps", type=int, help="optimizer steps of every run (default: the task's)")
    parser.add_argument("--settings", nargs="+", metavar="NAME",
                        help="run only these settings of the grid (names as in the table)")


def run(args):
    names = [name for name, _, _ in grid()]
    unknown = sorted(set(args.settings or []) - set(names))
    if unknown:
        print(f"pafree ablation: error: unknown setting(s) {unknown}; the grid: {names}", file=sys.stderr)
        return 1
    out = args.out or os.path.join("runs", f"ablation-{args.task}")
    results, failed = run_grid(args.task, args.seeds, out, max(1, args.jobs), args.steps, args.settings)
    base = os.path.join(out, RESULTS)
    print(f"{len(results)} runs finished or unstable; {base}.jsonl, {base}.md, {base}.png")
    for err in failed:
        print(f"pafree ablation: {err}", file=sys.stderr)
    return 1 if failed else 0
