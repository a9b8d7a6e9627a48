"""The training loop: a run directory, logging, periodic checkpoints, stopping, resume and plots.

A run keeps everything in its run directory:

    config.json      the settings (task, modes, hyper-parameters, seed)
    metrics.jsonl    one JSON object per logged step / evaluation
    curves.png       loss and validation metric against the step
    checkpoint.npz   parameters, optimizer state and step (no pickle), written
                     atomically (temporary file, then rename)
    baseline/        with ``compare``: the float baseline's run on the same data and seed

Bit-identical resume: the training batch of step t is a pure function of
(seed, t) (see ``pafree.tasks``), the dropout masks of step t come from a
generator seeded with (seed, t), and the optimizer state is in the checkpoint,
so a resumed run repeats exactly what the uninterrupted run would have done.

Stopping: the first SIGINT (Ctrl-C) or SIGTERM lets the current step finish, writes the
checkpoint and raises ``Interrupted`` (whose message is the command that continues); a
second one raises ``Aborted`` at once, leaving the last checkpoint as it was.

The training step itself (forward, loss, backward, clipping, optimizer update,
schedule) runs inside ``pafree.config.mode(...)``, so in ``pa`` mode it contains
no float multiply, divide, square root, exp or log. Logging and metrics (mean
loss of a logging interval, accuracy, BLEU) are reporting, outside that step.
"""
import json
import os
import shlex
import signal
import sys
import threading
import time

import numpy as np

from .run import CHECKPOINT, CONFIG, NonFiniteLoss, Run
from .settings import resolve_settings

METRICS = "metrics.jsonl"
CURVES = "curves.png"
BASELINE = "baseline"       # the --compare run's directory, inside the run directory


class Interrupted(Exception):
    """Training stopped at a signal after a complete step, with its checkpoint written."""


class Aborted(KeyboardInterrupt):
    """A second signal: stopped at once, the last checkpoint left as it was."""


class StopSignals:
    """SIGINT and SIGTERM while training. The first sets ``requested`` (the loop stops
    after the current step), or raises ``stop_now`` where that is set (nothing left to
    finish); a second raises Aborted wherever the program is."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.stop_now = None
        self.saved = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():   # else: cannot install
            self.saved = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)

    def handle(self, signum, frame):
        if self.requested:
            raise Aborted(f"stopped at once by a second {signal.Signals(signum).name}")
        self.requested = True
        if self.stop_now is not None:
            raise self.stop_now


def train(task="digits", mode="pa", seed=0, optimizer=None, out=None, resume=False,
          progress=True, stop_at=None, eval_limit=None, device="cpu", compare=False,
          hparams=None, precision=None, **overrides):
    """Train and return the final metrics (the dict ``pafree train --json`` prints).

    ``out``: run directory (default runs/<task>-<mode>-seed<seed>); ``resume``
    continues from its checkpoint with the settings in its config.json (``steps``
    may be raised). ``stop_at``: pause after this step with a checkpoint written
    (continue with ``resume=True``). ``eval_limit``: validate on the first n
    validation examples only. ``device``: "cpu" or "cuda" (see ``Run``).
    ``compare``: then also train the float baseline (mode standard, same settings, data
    and seed) in ``out/baseline``; its final metrics are under the key "baseline".
    ``precision``: "fp32" (default), or mixed precision "bf16" / "fp16" (see Run).
    ``overrides``: any key of the task's defaults (steps, batch_size, lr, d_model,
    ...) and the component modes (matmul, norm, softmax, loss, other); ``hparams``:
    task defaults only (see ``resolve_settings``)."""
    out = out or default_out(task, mode, seed, precision)
    run = open_run(out, resume, device, task, mode, seed, optimizer, hparams, overrides, precision)
    baseline_dir = os.path.join(out, BASELINE)
    baseline = open_baseline(run, baseline_dir, resume) if compare else None
    continue_with = shlex.join(["pafree", "train", "--out", out, "--resume"]
                               + ["--compare"] * compare
                               + (["--device", device] if device != "cpu" else []))
    start_logs(run, out, resume)
    if baseline is not None:
        start_logs(baseline, baseline_dir, resume)
    with StopSignals() as signals:
        final = loop(run, out, progress, stop_at, eval_limit, signals, continue_with)
        if baseline is not None and not final.get("paused"):
            signals.stop_now = None
            final["baseline"] = loop(baseline, baseline_dir, progress, stop_at, eval_limit,
                                     signals, continue_with, label="float baseline ")
    if not final.get("paused"):
        plot_curves(out, run.task.metric.name, [out, baseline_dir] if compare else [out])
    return final


def default_out(task, mode, seed, precision=None):
    precision = "" if precision in (None, "fp32") else f"-{precision}"
    return os.path.join("runs", f"{task}-{mode}{precision}-seed{seed}")


def open_run(out, resume, device, task, mode, seed, optimizer, hparams, overrides,
             precision=None):
    """The run to train: resumed from ``out``'s checkpoint, or new (nothing written yet)."""
    ckpt = os.path.join(out, CHECKPOINT)
    if resume:
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        given = {**{k: v for k, v in overrides.items() if v is not None}, **(hparams or {})}
        if precision is not None:
            given["precision"] = precision
        ignored = sorted(set(given) - {"steps"})
        if ignored:
            raise ValueError(f"--resume takes the settings of {os.path.join(out, CONFIG)}; "
                             f"only steps may change, not {', '.join(ignored)}")
        return Run.from_directory(out, device, steps=given.get("steps"))
    settings = resolve_settings(task, mode, seed, optimizer, hparams, precision or "fp32",
                                **overrides)
    if os.path.exists(ckpt):
        raise FileExistsError(f"{out} already holds a run; continue it with --resume "
                              f"or choose another --out")
    return Run(settings, device)


def open_baseline(run, out, resume):
    """The float baseline of ``run``: its settings with every component standard."""
    if run.settings["mode"] == "standard":
        raise ValueError("--compare: this run is the float baseline already (mode standard)")
    if resume and os.path.exists(os.path.join(out, CHECKPOINT)):
        return Run.from_directory(out, steps=run.hparams["steps"])
    settings = resolve_settings(run.settings["task"], "standard", run.seed)
    settings["hparams"] = dict(run.hparams)
    return Run(settings)


def start_logs(run, out, resume):
    """Write config.json; on resume drop the log lines beyond the checkpoint (they will
    be logged again), else start an empty log."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, CONFIG), "w") as f:
        json.dump(run.settings, f, indent=1)
    path = os.path.join(out, METRICS)
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f
                if resume and keep_row(json.loads(line), run.step)]
    with open(path, "w") as f:
        f.writelines(rows)


def keep_row(row, step):
    return row["step"] <= step and "train_seconds" not in row    # final rows come again


class Progress:
    """A bar on a terminal; on a pipe or file one line per logged step."""

    def __init__(self, total, initial, enabled, label):
        from tqdm import tqdm
        self.total, self.label, self.shown = total, label, {}
        self.lines = enabled and not sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, unit="step", desc=label.strip() or None,
                        disable=not enabled or self.lines, dynamic_ncols=True,
                        mininterval=1.0, file=sys.stderr)

    def step_done(self, step, logged):
        self.bar.update(1)
        self.bar.set_postfix(self.shown, refresh=False)
        if self.lines and logged:
            shown = " ".join(f"{k} {v}" for k, v in self.shown.items())
            print(f"{self.label}step {step}/{self.total} {shown}", file=sys.stderr, flush=True)

    def close(self):
        self.bar.close()


def loop(run, out, progress, stop_at, eval_limit, signals, continue_with, label=""):
    hp, metric = run.hparams, run.task.metric.name
    total = hp["steps"]
    log_every = max(1, total // 100)
    eval_every = max(1, total // 10)
    ckpt = os.path.join(out, CHECKPOINT)
    saved = run.step if os.path.exists(ckpt) else None     # the step the checkpoint holds

    def save():
        nonlocal saved
        if saved != run.step and run.parameters_finite():
            log.flush()
            run.save(ckpt)
            saved = run.step

    def log_losses():
        row = {"step": run.step, "loss": float(np.mean(recent)),
               "lr": float(run.schedule(run.step - 1))}
        recent.clear()
        report.shown["loss"] = f"{row['loss']:.3f}"
        log.write(json.dumps(row) + "\n")

    recent, started = [], time.time()
    report = Progress(total, run.step, progress, label)
    log = open(os.path.join(out, METRICS), "a")
    try:
        while run.step < total:
            try:
                loss = run.train_step(run.batch())
            except NonFiniteLoss as err:
                raise non_finite(err, label, saved, ckpt) from None
            recent.append(loss)
            logged = run.step % log_every == 0 or run.step == total
            if logged:
                log_losses()
            if (run.step % eval_every == 0 or run.step == total) and not signals.requested:
                valid = run.evaluate("valid", limit=eval_limit, beam=1)
                row = {"step": run.step, **{"valid_" + k: v for k, v in valid.items()}}
                log.write(json.dumps(row) + "\n")
                report.shown["valid_" + metric] = f"{valid[metric]:.3f}"
                save()
            report.step_done(run.step, logged)
            paused = stop_at is not None and stop_at <= run.step < total
            if signals.requested or paused:
                if recent:
                    log_losses()            # the part of a logging interval done so far
                save()
                if signals.requested:
                    raise Interrupted(f"interrupted at step {run.step} of {total}"
                                      f"{' (' + label.strip() + ')' if label else ''}; "
                                      f"continue with: {continue_with}")
                return {"task": run.settings["task"], "mode": run.settings["mode"],
                        "steps": run.step, "paused": True}
    finally:
        report.close()
        log.close()
    if saved == run.step:           # nothing left to finish: a signal stops at once
        signals.stop_now = Interrupted(f"interrupted in the final test evaluation "
                                       f"{'of the ' + label.strip() + ' ' if label else ''}"
                                       f"(the checkpoint of step {total} is complete); "
                                       f"continue with: {continue_with}")
    test = run.evaluate("test")
    signals.stop_now = None
    final = {"task": run.settings["task"], "mode": run.settings["mode"],
             "seed": run.seed, "steps": run.step,
             **{"test_" + k: v for k, v in test.items()},
             "train_seconds": round(time.time() - started, 1)}
    with open(os.path.join(out, METRICS), "a") as f:
        f.write(json.dumps({"step": run.step, **final}) + "\n")
    return final


def non_finite(err, label, saved, ckpt):
    """The NonFiniteLoss to report: what stopped, and what the run directory holds."""
    where = f" ({label.strip()})" if label else ""
    if saved is not None:
        kept = f"the last checkpoint ({ckpt}, step {saved}) is left as it was"
    elif err.step:
        kept = f"no checkpoint was written yet; the last finite loss was at step {err.step}"
    else:
        kept = "no checkpoint was written yet; no step had a finite loss"
    return NonFiniteLoss(err.value, err.step, f"training stopped{where}: {err}; {kept}")


def plot_curves(out, metric, run_dirs):
    """out/curves.png: training loss and the validation metric against the step, one line
    per run directory (the run, and with --compare its float baseline)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, CONFIG)) as f:
            settings = json.load(f)
        with open(os.path.join(run_dir, METRICS)) as f:
            rows = [json.loads(line) for line in f]
        losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        valid = [(r["step"], r["valid_" + metric]) for r in rows if "valid_" + metric in r]
        if losses:
            ax1.plot(*zip(*losses), label=settings["mode"])
        if valid:
            ax2.plot(*zip(*valid), marker="o", label=settings["mode"])
    ax1.set(xlabel="step", ylabel="training loss", yscale="log")
    ax2.set(xlabel="step", ylabel="validation " + metric.replace("_", " "))
    if len(run_dirs) > 1:
        ax2.legend()
        title = f"{settings['task']}, seed {settings['seed']}"
    else:
        title = f"{settings['task']}, mode {settings['mode']}, seed {settings['seed']}"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(out, CURVES), dpi=100)
    plt.close(fig)
